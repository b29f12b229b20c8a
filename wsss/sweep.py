"""A sweep's identity and the Hydra callback that records it and summarises its jobs.

`python run.py -m ...` (any sweeper: the basic grid, `hydra/sweeper=optuna`; any launcher, SLURM included) runs
the callback of conf/hydra/default.yaml (`hydra.callbacks.sweep_summary`):

- at the start, in the launching process, it writes `<sweep dir>/sweep.json`: the command's overrides, the
  swept keys (sweep syntax on the command line, `hydra.sweeper.params`), the objective and its direction, and
  the sweep's W&B group (its folder under the multirun root + a hash of the command);
- each job reads that record to name its W&B run `<stage> <key>=<value> ...` (`job_naming`);
- when a job ends it leaves `error.txt` if it failed, and the summary (wsss/sweep_summary.py) is rewritten, so a
  sweep stopped by a failed job still has one; when the multirun ends the summary is written once more.
"""
from __future__ import annotations

import logging
import shlex
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from wsss.artifacts import atomic_write_text
from wsss.sweep_dirs import sweep_id as command_id
from wsss.sweep_record import ERROR, RECORD, SweepRecord, override_key, short_keys, short_value

log = logging.getLogger("wsss.sweep")


def swept_keys(command: list[str], sweeper_params: dict | None) -> list[str]:
    """Keys of `command` written with sweep syntax (a,b / range() / choice() / interval() ...), then the keys of
    `hydra.sweeper.params`, each once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(command))
    keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
    keys += [str(k) for k in (sweeper_params or {})]
    return list(dict.fromkeys(keys))


def sweep_group(sweep_dir: Path, runs_dir: str | None, sweep_id: str) -> str:
    """`classifier/synthetic/resnet18/default-1a2b3c4d`: the folder under `<runs_dir>/multirun` (its name ends
    in the sweep id), with the id added when a custom hydra.sweep.dir left it out."""
    name = sweep_dir.name
    for root in ([Path(runs_dir) / "multirun", Path(runs_dir)] if runs_dir else []):
        try:
            name = sweep_dir.resolve().relative_to(root.resolve()).as_posix()
            break
        except ValueError:
            continue
    return name if name.endswith(sweep_id) else f"{name}#{sweep_id}"


def make_record(config: DictConfig) -> SweepRecord:
    """The record of the multirun composed as `config` (the launching process's config)."""
    command = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    sweeper = config.hydra.get("sweeper") or {}
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else None
    direction = sweeper.get("direction", "maximize")
    direction = str(direction if isinstance(direction, str) else "maximize").lower()
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_id = command_id(command)
    return SweepRecord(id=sweep_id, group=sweep_group(sweep_dir, OmegaConf.select(config, "paths.runs_dir"), sweep_id),
                       swept=swept_keys(command, params), command=command, objective=config.get("objective"),
                       direction="minimize" if direction.endswith("minimize") else "maximize", started=time.time())


def run_label(stage: str, swept: list[str], overrides: list[str]) -> str:
    """`classifier lr=0.1 seed=1`: the stage, then each swept key's value in this job (a swept `stage` is the
    first word already)."""
    values = {override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}
    names = short_keys([k for k in swept if k in values and k != "stage"])
    return " ".join([stage, *(f"{names[k]}={short_value(values[k])}" for k in names)])


def job_naming(stage: str) -> tuple[str, str] | None:
    """(W&B name, W&B group) of this process's sweep job; None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    sweep_dir = Path(str(hc.sweep.dir))
    overrides = [str(o) for o in hc.overrides.task]
    record = SweepRecord.load(sweep_dir)
    if record is None:  # the callback was left out of hydra.callbacks: every override names the run
        log.warning("%s has no %s (hydra.callbacks.sweep_summary removed?): naming the W&B run by all overrides",
                    sweep_dir, RECORD)
        return run_label(stage, [override_key(o) for o in overrides], overrides), sweep_dir.name
    return run_label(stage, record.swept, overrides), record.group


# -- the objective -------------------------------------------------------------------------------------
def objective_value(objective: str | None, metrics: dict) -> float | None:
    """The value a sweeper optimises: `metrics[objective]`, or a clear error naming the metrics there are."""
    if not objective:
        return None
    value = metrics.get(objective)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        scalars = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise KeyError(f"objective={objective} is not a scalar metric of this run; it has: {', '.join(scalars)}. "
                       "Set objective= to one of them (or add the task that computes it to tasks=[...]).")
    return float(value)


# -- the callback --------------------------------------------------------------------------------------
def error_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


class SweepSummary(Callback):
    """Records the sweep (sweep.json) and writes sweep_summary.csv/.md into hydra.sweep.dir."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        record = make_record(config)
        record.save(Path(str(config.hydra.sweep.dir)))
        log.info("sweep %s: swept %s; W&B group %s; folder %s", record.id,
                 ", ".join(record.swept) or "nothing", record.group, shlex.quote(str(config.hydra.sweep.dir)))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(str(config.hydra.runtime.output_dir)) / ERROR).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        job_dir = Path(str(config.hydra.runtime.output_dir))
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            atomic_write_text(job_dir / ERROR, error_line(error) + "\n\n" + text)
        self._summarise(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = self._summarise(Path(str(config.hydra.sweep.dir)))
        if rows is not None:
            done = sum(r.status == "done" for r in rows)
            log.info("sweep summary of %d jobs (%d done): %s", len(rows), done,
                     shlex.quote(str(Path(str(config.hydra.sweep.dir)) / "sweep_summary.md")))

    @staticmethod
    def _summarise(sweep_dir: Path):
        from wsss.sweep_summary import write_summary

        if not sweep_dir.is_dir():
            return None
        record = SweepRecord.load(sweep_dir)
        return write_summary(sweep_dir, record)
