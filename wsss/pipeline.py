"""`python run.py pipeline=<name>`: the steps of conf/pipeline/<name>.yaml, in order, as ordinary stage runs.

Each step is `python run.py stage=<stage> <overrides>` in a child process, in the same run folder as that
command typed by hand, so a pipeline and manual runs share results. Child processes rather than in-process
runs: Lightning's DDP launcher re-executes the child's own command line (a plain single run), every stage
starts from a fresh interpreter (no leaked CUDA memory, W&B runs, seeds or registries), and a crash in one
stage leaves the pipeline process able to report which step failed and how to resume.

Before running anything the pipeline composes every step's configuration in-process (Hydra's compose API),
which gives each step its run folder and resolved configuration:
- artifacts are handed on through the later steps' overrides, e.g. `stage.inputs.cams=${outputs.cams}` or
  `${steps.classifier.run_dir}/cams` (see conf/pipeline/wsss.yaml), resolved against the earlier steps;
- a bad override or a missing stage key fails before the first step starts, naming the step;
- a step is *up to date* (skipped) when its run folder holds a finished run of the same configuration:
  run.py writes config.yaml when a run starts and metrics.json after its last task (after the artifact
  manifests), so a metrics.json newer than config.yaml, and a config.yaml equal to the step's composed
  configuration (trainer, logger, paths and num_workers aside), mean the run finished with that config;
  and every artifact manifest must still match its producer (the checkpoint and input folders it
  records, `wsss.artifacts.stale_reason`, the rule a predict applies before writing);
- a step maps a pipeline-level experiment to its own recipe: `experiments: {<experiment>: <recipe>}` runs
  the step with `experiment=<recipe>` instead (a list there adds overrides to the pipeline's experiment;
  `{stage: <stage>, experiment: <recipe>}` runs another stage in the step, e.g. P-OC in place of P-NOC);
- an interrupted pipeline resumes where it stopped: finished steps are up to date, the interrupted stage
  resumes from last.ckpt and writes only its missing artifacts.
Command-line overrides go to every step; `stage.*` ones only to steps whose stage has the key (one that
no step has is an error). The pipeline process itself composes the default stage (classifier), so a key
that only other stages have is given as `++stage.<key>=<value>` (e.g. `++stage.radius=4` for affinity).
Steps whose conf/stage file does not exist are left out with a log line.
At the end the pipeline folder (hydra.run.dir of the pipeline file) gets summary.md and metrics.json:
the reported metrics (mIoU by default) after every step; then the thesis's rows beside the steps that ran
one of its recipes, with the settings by which each departs from it (thesis.md, also at the end of
summary.md; `python -m wsss.thesis <folder>` writes the same from finished runs).
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from wsss import learned
from wsss.artifacts import atomic_write_json, atomic_write_text
from wsss.compose import StepComposer
from wsss.finished_run import comparable, stale_artifacts, why_not_finished  # noqa: F401 (pipeline's API)
from wsss.reliability.children import run_child
from wsss.reliability.run_lock import hold_run_folder
from wsss.stage_schema import accepts
from wsss.user_errors import UserError

log = logging.getLogger("wsss.pipeline")

ROOT = Path(__file__).resolve().parents[1]
RUN_PY = ROOT / "run.py"
CONF_DIR = ROOT / "conf"
DEFAULT_REPORT = ("*miou",)


class PipelineError(UserError, RuntimeError):
    """A pipeline that cannot go on: the message names the step and what to do."""


@dataclass
class Step:
    id: str
    stage: str
    overrides: list[str]                 # run.py arguments of the child process
    run_dir: Path
    plain: dict                          # the resolved configuration the step runs with
    report: list[str]
    needs: list[str] = field(default_factory=list)   # ids of the earlier steps whose outputs it reads
    inputs: dict[str, str] = field(default_factory=dict)  # override value path -> producing step id
    status: str = "pending"
    seconds: float | None = None         # wall time of its run; an up-to-date step shows the recorded one

    @property
    def time_file(self) -> Path:
        return self.run_dir / "pipeline_seconds.json"

    def recorded_seconds(self) -> float | None:
        """The wall time this step's run folder recorded when a pipeline last ran it (None when none did)."""
        try:
            return float(json.loads(self.time_file.read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def command(self) -> list[str]:
        return [sys.executable, str(RUN_PY), *self.overrides]


# -- configuration --------------------------------------------------------------------------------------
def stage_exists(stage: str, conf_dir: Path = CONF_DIR) -> bool:
    return (conf_dir / "stage" / f"{stage}.yaml").is_file()


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Command-line overrides for every step: (general ones, `stage.*` ones); pipeline/stage choices dropped."""
    general, stage_keys = [], []
    for text, ov in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        key = ov.key_or_group
        if key == "pipeline" or key.startswith("pipeline.") or key == "run_name":
            continue
        if key == "stage":
            log.warning("%s ignored: every pipeline step chooses its own stage", text)
        elif key.startswith("stage."):
            stage_keys.append(text)
        else:
            general.append(text)
    return general, stage_keys


def format_value(value: Any) -> str:
    """A resolved Python value in Hydra's override syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def resolve_override(text: str, namespace: dict, step_id: str) -> str:
    """`key=<value with ${steps...}/${outputs...}>` with the value resolved against the earlier steps."""
    if "${" not in text:
        return text
    key, sep, value = text.partition("=")
    if not sep:
        raise PipelineError(f"step {step_id!r}: override {text!r} is not of the form key=value")
    node = OmegaConf.create({**namespace, "__value__": value})
    try:
        resolved = OmegaConf.to_container(node, resolve=True)["__value__"]
    except Exception as e:  # omegaconf's interpolation errors
        known = ", ".join(namespace["steps"]) or "none"
        outputs = ", ".join(namespace["outputs"]) or "none"
        raise PipelineError(
            f"step {step_id!r}: cannot resolve {text!r}: {e}. Earlier steps in this pipeline: {known}; "
            f"outputs offered so far: {outputs} (a step is left out when its conf/stage file is missing or "
            f"enabled=false)") from None
    return f"{key}={format_value(resolved)}"


def has_key(plain: dict, dotted: str) -> bool:
    node: Any = plain
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def plan(pipeline: dict, general: list[str], stage_overrides: list[str], run_name: str,
         compose_step: Callable[[list[str]], tuple[dict, Path]], experiment: str | None = None,
         context: dict | None = None, conf_dir: Path = CONF_DIR) -> list[Step]:
    """The steps to run, each with its resolved overrides, configuration and run folder."""
    parser = OverridesParser.create()
    stage_keys = [parser.parse_override(t) for t in stage_overrides]
    used_stage_keys: set[str] = set()
    namespace = {**(context or {}), "run_name": run_name, "pipeline": {"name": pipeline.get("name")},
                 "steps": {}, "outputs": {}}
    steps: list[Step] = []
    for sid, spec in (pipeline.get("steps") or {}).items():
        if not spec or not spec.get("enabled", True):
            log.info("step %s: disabled", sid)
            continue
        stage = spec.get("stage")
        if not stage:
            raise PipelineError(f"pipeline step {sid!r} has no `stage`")
        recipe = (spec.get("experiments") or {}).get(experiment) or []
        if isinstance(recipe, dict):  # {stage: <stage>, experiment: <recipe>}: another stage's recipe in this step
            stage, recipe = recipe.get("stage", stage), recipe.get("experiment") or []
        if not stage_exists(stage, conf_dir):
            log.info("step %s: conf/stage/%s.yaml does not exist (stage not available yet): left out", sid, stage)
            continue
        if isinstance(recipe, str):   # the step's own recipe replaces the pipeline's experiment
            recipe = [f"experiment={recipe}"]
        own = [resolve_override(str(t), namespace, sid) for t in [*(spec.get("overrides") or []), *recipe]]
        if any(t.startswith("experiment=") for t in own):
            step_general = [t for t in general if not t.startswith("experiment=")]
        else:
            step_general = general
        base = [f"stage={stage}", *step_general, f"run_name={run_name}"]
        plain, _ = compose_step([*base, *own])
        applicable = []
        for text, ov in zip(stage_overrides, stage_keys):
            if has_key(plain, ov.key_or_group) or (ov.is_add() and accepts(stage, ov.key_or_group[len("stage."):])):
                applicable.append(text.removeprefix("++") if ov.is_force_add() else text)
                used_stage_keys.add(text)
        overrides = [*base, *own, *applicable]  # the command line wins over the pipeline file
        plain, run_dir = compose_step(overrides)
        check_step_config(sid, plain)
        step = Step(sid, stage, overrides, run_dir, plain, list(spec.get("report") or DEFAULT_REPORT))
        for earlier in steps:
            for t in own:
                value = t.partition("=")[2]
                if value.startswith(str(earlier.run_dir)):
                    step.inputs[value] = earlier.id
                    if earlier.id not in step.needs:
                        step.needs.append(earlier.id)
        clash = next((s for s in steps if s.run_dir.resolve() == run_dir.resolve()), None)  # as on disk
        if clash:
            raise PipelineError(f"steps {clash.id!r} and {sid!r} would share the run folder {run_dir}; give one "
                                f"of them its own run_name (e.g. run_name=${{run_name}}_{sid} in its overrides)")
        steps.append(step)
        namespace["steps"][sid] = {"run_dir": str(run_dir), "stage": stage, "cfg": plain}
        for name, rel in (spec.get("outputs") or {}).items():
            namespace["outputs"][name] = str(run_dir / rel)
    unused = [t for t in stage_overrides if t not in used_stage_keys]
    if unused and steps:
        raise PipelineError(f"{unused}: no step of the pipeline has these keys (stages: "
                            f"{', '.join(s.stage for s in steps)})")
    if not steps:
        raise PipelineError(f"pipeline {pipeline.get('name')!r} has no step whose stage exists")
    return steps


# -- state of a step -----------------------------------------------------------------------------------
def check_step_config(step_id: str, plain: dict) -> None:
    """The stage's own check of settings that would fail it later (e.g. AffinityStage.check_config)."""
    target = (plain.get("stage") or {}).get("_target_")
    check = getattr(get_class(target), "check_config", None) if target else None
    try:
        check and check(plain)
    except ValueError as e:
        raise PipelineError(f"step {step_id!r}: {e}") from None


def why_not_done(step: Step, check_config: bool = True) -> str | None:
    """None when the step's run folder holds a finished run of this configuration, else the reason.

    `check_config=False` right after the step ran: the child composed conf/ itself, which may have been
    edited since the pipeline started (Hydra composes lazily); its own config.yaml is then the truth."""
    return why_not_finished(step.run_dir, step.plain, check_config)


def check_inputs(step: Step, steps: dict[str, Step]) -> None:
    """Fail before starting a step whose inputs an earlier step should have produced but did not."""
    for path, producer in step.inputs.items():
        if not Path(path).exists():
            p = steps[producer]
            raise PipelineError(
                f"step {step.id!r}: input {path} does not exist; step {producer!r} (stage={p.stage}, run folder "
                f"{p.run_dir}) should have produced it: check its `outputs` in the pipeline file and its log "
                f"{p.run_dir / 'app.log'}")


# -- running ---------------------------------------------------------------------------------------------
def run_step(step: Step, cwd: Path, pipeline_name: str) -> None:
    env = dict(os.environ, WSSS_PIPELINE=pipeline_name, WSSS_PIPELINE_STEP=step.id)
    log.info("step %s: %s", step.id, " ".join(step.command()[1:]))
    rc = run_child(step.command(), cwd=cwd, env=env)  # ends with the pipeline (wsss/reliability/children.py)
    if rc != 0:
        raise PipelineError(f"step {step.id!r} (stage={step.stage}) failed with exit status {rc}; see "
                            f"{step.run_dir / 'app.log'}. Run the pipeline again to resume from this step.")


def reported(step: Step) -> list[tuple[str, float]]:
    path = step.run_dir / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    return [(k, float(v)) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and any(fnmatch.fnmatchcase(k, p) for p in step.report)]


def summary_rows(steps: list[Step]) -> list[dict]:
    rows = []
    for s in steps:
        values = reported(s) or [("", float("nan"))]
        for key, value in values:
            rows.append({"step": s.id, "stage": s.stage, "metric": key, "value": value, "status": s.status,
                         "seconds": seconds_cell(s.seconds), "run_dir": str(s.run_dir)})
    return rows


def seconds_cell(seconds: float | None) -> float | str:
    return "-" if seconds is None else round(seconds, 1)


def cell(value: Any, percent: bool = False) -> str:
    if isinstance(value, float):
        return "" if value != value else (f"{100 * value:.2f}" if percent else f"{value:g}")
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r[c], c == "value") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(steps: list[Step], out_dir: Path, title: str) -> dict:
    """summary.md (mIoU ×100 after every step), metrics.json (`<step>/<metric>`: value) and pipeline.json."""
    rows = summary_rows(steps)
    columns = ["step", "stage", "metric", "value", "status", "seconds"]
    text = f"# {title}\n\nValues ×100. Run folders:\n\n" + "".join(
        f"- {s.id}: `{s.run_dir}`\n" for s in steps) + "\n" + markdown_table(rows, columns)
    atomic_write_text(out_dir / "summary.md", text)
    flat = {f"{r['step']}/{r['metric']}": r["value"] for r in rows if r["metric"]}
    atomic_write_json(out_dir / "metrics.json", flat)
    print_table(rows, columns, title)
    return flat


def record(steps: list[Step], out_dir: Path) -> None:
    atomic_write_json(out_dir / "pipeline.json", [
        {"id": s.id, "stage": s.stage, "status": s.status, "seconds": seconds_cell(s.seconds),
         "run_dir": str(s.run_dir),
         "needs": s.needs, "command": "python run.py " + " ".join(s.overrides)} for s in steps])


def print_table(rows: list[dict], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c in ("value", "seconds") else "left", no_wrap=True)
    cells = [[cell(r[c], c == "value") for c in columns] for r in rows]
    for row in cells:
        table.add_row(*row)
    # wide enough for the longest metric names: a non-terminal (log file, CI) console is 80 columns wide
    needed = sum(max([len(c), *(len(row[i]) for row in cells)]) + 3 for i, c in enumerate(columns)) + 1
    console = Console()
    Console(width=max(console.width, needed)).print(table)


def children_cpu_seconds() -> float:
    """user + sys CPU time of the finished child processes (the steps and their data-loader workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stop_after(step: Step, steps: list[Step], out_dir: Path, title: str, stop: bool) -> None:
    """Marks a step that learned nothing; stopping there still writes the table of the steps so far."""
    try:
        mark_if_learned_nothing(step, stop)
    except PipelineError:
        record(steps, out_dir)
        write_summary([s for s in steps if s.status != "pending"], out_dir, title)
        raise


def mark_if_learned_nothing(step: Step, stop: bool) -> None:
    """A step whose run left a learned-nothing verdict (wsss/learned.py) is marked in the table; with
    `pipeline.stop_if_learned_nothing=true` the pipeline stops after it."""
    message = learned.verdict(step.run_dir)
    if message is None:
        return
    step.status += " · LEARNED NOTHING"
    log.warning("step %s: %s", step.id, message)
    if stop:
        raise PipelineError(f"step {step.id!r} (stage={step.stage}) learned nothing, and "
                            f"pipeline.stop_if_learned_nothing=true stops here: {message}")


def execute(steps: list[Step], out_dir: Path, cwd: Path, name: str, title: str,
            stop_if_learned_nothing: bool = False) -> dict:
    by_id = {s.id: s for s in steps}
    out_dir.mkdir(parents=True, exist_ok=True)
    for s in steps:
        reason = why_not_done(s)
        if reason is None:
            s.status, s.seconds = "up to date", s.recorded_seconds()
            log.info("step %s (stage=%s): up to date in %s", s.id, s.stage, s.run_dir)
            stop_after(s, steps, out_dir, title, stop_if_learned_nothing)
            continue
        log.info("step %s (stage=%s): runs (%s)", s.id, s.stage, reason)
        check_inputs(s, by_id)
        start, cpu_start = time.monotonic(), children_cpu_seconds()
        s.status = "running"
        s.time_file.unlink(missing_ok=True)  # a stale time must not outlive the run it timed
        record(steps, out_dir)
        try:
            run_step(s, cwd, name)
        except BaseException:
            s.status = "failed"
            s.seconds = time.monotonic() - start
            record(steps, out_dir)
            raise
        s.seconds = time.monotonic() - start
        s.status = "ran"
        cpu = round(children_cpu_seconds() - cpu_start, 1)
        log.info("step %s: %.1f s wall, %.1f s CPU (user + sys of its processes)", s.id, s.seconds, cpu)
        atomic_write_json(s.time_file, {"seconds": round(s.seconds, 1), "cpu_seconds": cpu, "pipeline": name})
        left = why_not_done(s, check_config=False)
        if left:
            raise PipelineError(f"step {s.id!r} exited 0 but its run folder is not complete ({left}): {s.run_dir}")
        stop_after(s, steps, out_dir, title, stop_if_learned_nothing)
    record(steps, out_dir)
    return write_summary(steps, out_dir, title)


def slurm_resources(plain: dict) -> list[str]:
    """sbatch options giving a step the nodes, tasks and GPUs its resolved trainer asks for: one SLURM task per
    device, as Lightning expects under SLURM (a one-GPU step such as PoolNet's beside 4-GPU ones); [] when
    `trainer.devices` is not a number (e.g. `auto`)."""
    t = plain.get("trainer") or {}
    devices, nodes = t.get("devices"), t.get("num_nodes") or 1
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        return []
    out = [f"--nodes={nodes}", f"--ntasks-per-node={devices}"]
    accelerator = t.get("accelerator")
    if accelerator in ("gpu", "cuda", "cpu"):  # `auto`: the sbatch header's GPUs stay
        out.append(f"--gpus-per-node={devices if accelerator != 'cpu' else 0}")
    return out


def slurm_line(step: Step) -> str:
    """The step's line of steps.txt: `<its sbatch resources> -- <run.py overrides>` (slurm/pipeline.sh)."""
    resources = slurm_resources(step.plain)
    return " ".join([*resources, "--", *step.overrides] if resources else step.overrides)


def show_plan(steps: list[Step], out_dir: Path) -> dict:
    """pipeline.dry_run=true: what would run, and why, without running anything; whether each step would fail
    (wsss/preflight.py: data, weights, inputs, disk), also in `<out_dir>/dry_run.json`; the steps' overrides,
    one line each, go to `<out_dir>/steps.txt` (the input of slurm/pipeline.sh: one SLURM job per step)."""
    from wsss import preflight  # what each step would need: data, weights, inputs, disk

    checks = preflight.check_steps(steps, why_not_done)
    for s in steps:
        status, check = checks[s.id]
        print(f"{s.id}: {status}\n  python run.py {' '.join(s.overrides)}", flush=True)
        for line in check.details() if check else []:
            print("  " + line.replace("\n", "\n    "), flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "dry_run.json", preflight.summary(checks))
    atomic_write_text(out_dir / "steps.txt", "".join(slurm_line(s) + "\n" for s in steps))
    print(f"one line per step: {out_dir / 'steps.txt'} (slurm/pipeline.sh {out_dir / 'steps.txt'} submits them "
          "as a chain of jobs)", flush=True)
    return {}


# -- entry from the app ----------------------------------------------------------------------------------
def effective_run_name(cfg: DictConfig) -> str:
    """run_name, plus the job's sweep subfolder in a multirun so that sweep members get their own runs."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return str(cfg.run_name)
    sub = os.path.relpath(hc.runtime.output_dir, hc.sweep.dir)
    return str(cfg.run_name) if sub in (".", "") else f"{cfg.run_name}/{sub}"


def run_pipeline(cfg: DictConfig) -> dict:
    """Runs the pipeline selected by `pipeline=<name>`; returns `{<step>/<metric>: value}`."""
    hc = HydraConfig.get()
    spec = OmegaConf.to_container(cfg.pipeline, resolve=False)
    general, stage_keys = split_overrides(list(hc.overrides.task))
    run_name = effective_run_name(cfg)
    context = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "backbone")}
    steps = plan(spec, general, stage_keys, run_name, StepComposer(hc.job.config_name or "config"),
                 experiment=hc.runtime.choices.get("experiment"), context=context)
    if "wandb" in (cfg.get("logger") or {}):
        group = f"{spec.get('name')}-{cfg.dataset.name}-{cfg.backbone.name}-{run_name}".replace("/", "-")
        for s in steps:
            tags = [*s.plain["logger"]["wandb"].get("tags", []), f"pipeline-{spec.get('name')}"]
            s.overrides += [f"logger.wandb.group={group}", f"logger.wandb.tags={format_value(tags)}"]
    log.info("pipeline %s: %s", spec.get("name"), " -> ".join(f"{s.id}" for s in steps))
    if spec.get("dry_run"):
        return show_plan(steps, Path(hc.runtime.output_dir))
    title = f"pipeline {spec.get('name')} · {cfg.dataset.name} · {cfg.backbone.name} · {run_name}"
    with hold_run_folder(hc.runtime.output_dir):  # one pipeline per folder (wsss/reliability/run_lock.py)
        metrics = execute(steps, Path(hc.runtime.output_dir), Path(hc.runtime.cwd), str(spec.get("name")),
                          title, bool(spec.get("stop_if_learned_nothing", False)))
    from wsss.reports import write_reports  # the pipeline file's `reports:` (thesis analyses of the runs)

    write_reports(spec.get("reports"), steps, Path(hc.runtime.output_dir), context)
    thesis_beside(steps, Path(hc.runtime.output_dir))
    return metrics


def thesis_beside(steps: list[Step], out_dir: Path) -> None:
    """The pipeline's last step: the thesis's rows beside the steps' numbers, each with the settings by which
    the step departs from its recipe (wsss/thesis/report.py), in thesis.md and at the end of summary.md."""
    from wsss.thesis.report import write_report
    from wsss.thesis.runs import read_run

    text = write_report([read_run(s.run_dir) for s in steps], out_dir)
    summary = out_dir / "summary.md"
    atomic_write_text(summary, summary.read_text() + "\n" + text)
    print(text, end="", flush=True)
