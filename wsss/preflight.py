"""What a real run of each pipeline step would need, checked without running it (`pipeline.dry_run=true`).

For every step that is not up to date:
- data: the splits its tasks read exist and pass the data scan (wsss/data/scan.py; the scan is cached, so the
  real run then skips it);
- weights: ImageNet weights it loads are in the cache (wsss/weights.py), or can be downloaded from here;
  a `backbone.weights_path` exists;
- inputs: every absolute path in its `stage` configuration exists, or an earlier step of the pipeline makes it
  (and that step would not fail);
- disk: the artifacts its predict tasks write (wsss/reliability/disk.py's estimate: float16 planes per present
  class for `.npz` maps, a byte per pixel for PNGs) fit, with those of the earlier steps, on the disk of
  `paths.runs_dir`. Checkpoints and logs are not counted.
A step with a problem says `would fail: <the first problem>`, the rest listed below it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from wsss.stage_contract import checked_task_names, data_read, written_artifacts

GiB = 1024**3
# data sets written on first use (nothing on disk to check before)
GENERATED = ("wsss.data.synthetic.SyntheticDataset",)


def human(size: float) -> str:
    """e.g. 7.1 GiB, 830 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return ""


@dataclass
class StepCheck:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    disk_bytes: int = 0

    def details(self) -> list[str]:
        """The lines under the status: the rest of the first problem, the other problems, the notes."""
        rest = self.problems[0].split("\n", 1)[1:] if self.problems else []
        return [*rest, *self.problems[1:], *self.notes]

    def status(self, reason: str) -> str:
        return f"would fail: {self.problems[0].splitlines()[0]}" if self.problems else f"runs ({reason})"


# -- one step ------------------------------------------------------------------------------------------
def stage_class(plain: dict):
    from hydra.utils import get_class

    return get_class(plain["stage"]["_target_"])


def step_tasks(plain: dict) -> list[str]:
    return checked_task_names(stage_class(plain), plain)


class Splits:
    """The `dm.split(name)` the data scan asks for, without a datamodule."""

    def __init__(self, dataset_cfg: dict):
        self.cfg, self._splits = dataset_cfg, {}

    def split(self, name: str):
        from wsss.data.datasets import build_split

        if name not in self._splits:
            self._splits[name] = build_split(self.cfg, name)
        return self._splits[name]


def check_data(plain: dict, tasks: list[str], splits: Splits, check: StepCheck) -> None:
    from wsss.data.scan import DataScanError, requirements, scan

    reads = data_read(stage_class(plain), tasks)
    d = plain["dataset"]
    if d.get("_target_") in GENERATED:
        check.notes.append(f"data: {d['name']} is generated on first use")
        return
    try:
        if d.get("scan", True):
            counts = scan(splits, plain, reads, Path(plain["paths"]["runs_dir"]) / ".scan")
        else:
            counts = {s: len(splits.split(s).ids) for s in requirements(plain, reads)}
    except (DataScanError, OSError, ValueError, KeyError) as e:
        hint = prepare_hint(d["name"]) if isinstance(e, FileNotFoundError) else ""
        check.problems.append(f"data: {str(e).strip(chr(39))}{hint}")
        return
    check.notes.append("data: " + ", ".join(f"{s} {n} images" for s, n in counts.items()) + " (scanned: ok)")


def prepare_hint(name: str) -> str:
    from wsss.data.prepare import DATASETS

    return f" (python -m wsss.data.prepare {name} --help: the folder from the official archives)" \
        if name in DATASETS else ""


_WEIGHTS: dict[tuple, tuple[str | None, str]] = {}


def weights_state(name: str) -> tuple[str | None, str]:
    """(the problem, or None; a note) for the ImageNet weights of backbone `name`, memoised per cache."""
    from wsss import weights as w

    key = (name, str(w.hub_cache()), w.offline())
    if key not in _WEIGHTS:
        try:
            src = w.source_of(name)
        except w.WeightsUnavailable as e:
            _WEIGHTS[key] = (str(e), "")
            return _WEIGHTS[key]
        path = w.cached_file(src)
        offline = w.offline() and src.hf_repo
        reason = None if path else ("HF_HUB_OFFLINE is set" if offline else w.unreachable(src))
        if path:
            _WEIGHTS[key] = (None, f"weights: {name} from the cache, {path}")
        elif reason:
            problem = (f"weights: the ImageNet weights of backbone {name} ({src.timm_id}) are not in the "
                       f"cache {w.cache_of(src)} and cannot be downloaded here ({reason}); run `python -m "
                       f"wsss.weights {name}` on a machine with internet, or set backbone.pretrained=false")
            _WEIGHTS[key] = (problem, "")
        else:
            _WEIGHTS[key] = (None, f"weights: {name} not cached; downloaded from {src.where()} at the start")
    return _WEIGHTS[key]


def check_weights(plain: dict, check: StepCheck) -> None:
    b = plain.get("backbone") or {}
    if b.get("weights_path"):
        path = Path(b["weights_path"]).expanduser()
        if not path.is_file():
            check.problems.append(f"weights: backbone.weights_path={path} does not exist")
        else:
            check.notes.append(f"weights: {path}")
    elif not b.get("pretrained"):
        check.notes.append(f"weights: {b.get('name')} from scratch (backbone.pretrained=false)")
    else:
        problem, note = weights_state(str(b["name"]))
        (check.problems.append(problem) if problem else check.notes.append(note))


def absolute_paths(node, prefix: str = "stage") -> list[tuple[str, str]]:
    """(key, value) of every string in the stage config that is an absolute path."""
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in absolute_paths(v, f"{prefix}.{k}")]
    if isinstance(node, list):
        return [kv for i, v in enumerate(node) for kv in absolute_paths(v, f"{prefix}[{i}]")]
    return [(prefix, node)] if isinstance(node, str) and node.startswith("/") else []


def check_inputs(step, earlier: dict, check: StepCheck) -> None:
    """Each input path exists, or an earlier step makes it; `earlier`: run folder -> (step id, its check)."""
    for key, value in absolute_paths(step.plain.get("stage") or {}):
        maker = next((m for run_dir, m in earlier.items() if value.startswith(run_dir + "/")), None)
        if maker is not None:
            if maker[1] is not None and maker[1].problems:
                check.problems.append(f"inputs: {key}={value} comes from step {maker[0]!r}, which would fail")
        elif not Path(value).exists():
            check.problems.append(f"inputs: {key}={value} does not exist and no earlier step makes it")


def written_kinds(plain: dict, tasks: list[str]) -> list[tuple[str, str, list[str]]]:
    """(kind, suffix, splits) of the per-image artifacts the step's tasks write, as its stage declares."""
    return [(a.kind, a.suffix, a.splits(plain)) for a in written_artifacts(stage_class(plain), tasks)]


def check_disk_need(plain: dict, tasks: list[str], splits: Splits, check: StepCheck) -> None:
    from wsss.reliability.disk import estimate_artifact_bytes

    parts = []
    for kind, suffix, names in written_kinds(plain, tasks):
        for name in names:
            try:
                ds = splits.split(name)
                size = estimate_artifact_bytes(ds, ds.ids, suffix)
            except (OSError, ValueError, KeyError):
                continue   # the data check says why
            check.disk_bytes += size
            parts.append(f"{kind}/{name} {human(size)}")
    if parts:
        check.notes.append(f"disk: about {human(check.disk_bytes)} of artifacts ({', '.join(parts)})")


def free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


# -- the pipeline ----------------------------------------------------------------------------------------
def check_steps(steps: list, why_not_done: Callable) -> dict[str, tuple[str, StepCheck | None]]:
    """{step id: (status line, its check or None when up to date)}."""
    out: dict[str, tuple[str, StepCheck | None]] = {}
    earlier: dict[str, tuple[str, StepCheck | None]] = {}
    splits_of: dict[str, Splits] = {}
    total = 0
    for step in steps:
        reason = why_not_done(step)
        if reason is None:
            out[step.id] = ("up to date", None)
            earlier[str(step.run_dir)] = (step.id, None)
            continue
        check = StepCheck()
        tasks = step_tasks(step.plain)
        key = repr(sorted(step.plain["dataset"].items()))
        splits = splits_of.setdefault(key, Splits(step.plain["dataset"]))
        check_data(step.plain, tasks, splits, check)
        check_weights(step.plain, check)
        check_inputs(step, earlier, check)
        if not any(p.startswith("data:") for p in check.problems):
            check_disk_need(step.plain, tasks, splits, check)
        total += check.disk_bytes
        free = free_bytes(Path(step.plain["paths"]["runs_dir"]))
        if total > free:
            runs = step.plain["paths"]["runs_dir"]
            check.problems.append(f"disk: the steps up to this one write about {human(total)} of artifacts "
                                  f"but {human(free)} are free under paths.runs_dir={runs}; free space or "
                                  "point it at a larger disk")
        out[step.id] = (check.status(reason), check)
        earlier[str(step.run_dir)] = (step.id, check)
    return out


def summary(checks: dict[str, tuple[str, StepCheck | None]]) -> dict:
    """The dry run's record (dry_run.json): status, problems, notes and disk estimate of each step."""
    return {sid: {"status": status, "problems": c.problems if c else [], "notes": c.notes if c else [],
                  "disk_bytes": c.disk_bytes if c else 0} for sid, (status, c) in checks.items()}
