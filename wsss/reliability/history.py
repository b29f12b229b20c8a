"""Nothing a run logged is lost by a rerun, a resume or a requeue.

- `new_invocation()` / `invocation_id()`: names one run of a folder (start time and pid of the launch's rank
  0; the DDP ranks Lightning re-executes inherit it through the environment).
- `KeptCSVLogger`: Lightning's CSVLogger with `version: ""` deletes `logs/metrics.csv` when it starts again in
  the same folder; this one appends to it, every row carrying its `invocation`.
- `merge_metrics`: `metrics.json` keeps every key an earlier invocation wrote, takes the latest value of each,
  and records under `_invocation` which invocation produced each key.
- `wandb_run_id`: one W&B run id per run folder (`<run folder>/wandb_run_id`), so a resume or a requeue
  continues the same W&B run instead of starting a new one.
"""
from __future__ import annotations

import csv
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from wsss.artifacts import atomic_write_json, atomic_write_text
from wsss.reliability.run_lock import is_launch_rank_zero

INVOCATION_VARIABLE = "WSSS_INVOCATION"
INVOCATION_KEY = "_invocation"
WANDB_ID_FILE = "wandb_run_id"


def new_invocation() -> str:
    """Start a new invocation (rank 0, when a run starts); the ranks it launches inherit its id."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    os.environ[INVOCATION_VARIABLE] = f"{started}-pid{os.getpid()}-{secrets.token_hex(2)}"
    return os.environ[INVOCATION_VARIABLE]


def invocation_id() -> str:
    return os.environ.get(INVOCATION_VARIABLE) or new_invocation()


class KeptExperimentWriter(ExperimentWriter):
    """Appends to an existing metrics.csv (its columns kept) instead of deleting it."""

    def __init__(self, log_dir: str, invocation: str):
        super().__init__(log_dir)
        self.invocation = invocation
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))

    def _check_log_dir_exists(self) -> None:
        pass  # Lightning's removes metrics.csv here

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics_dict, step)
        self.metrics[-1]["invocation"] = self.invocation


class KeptCSVLogger(CSVLogger):
    """`logs/metrics.csv` across invocations: every run's rows, each with its invocation."""

    @property
    @rank_zero_experiment
    def experiment(self) -> KeptExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = KeptExperimentWriter(self.log_dir, invocation_id())
        return self._experiment


def merge_metrics(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write `metrics` into the metrics.json at `path` over what earlier invocations wrote; the merge."""
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}  # a damaged file (written atomically, so hand-edited): this invocation's values remain
    produced = dict(old.pop(INVOCATION_KEY, None) or {})
    now = invocation_id()
    produced.update({k: now for k in metrics})
    merged = {**old, **metrics}
    atomic_write_json(path, {**merged, INVOCATION_KEY: {k: produced.get(k, "earlier") for k in merged}})
    return merged


def wandb_run_id(run_dir: str | Path) -> str:
    """The W&B run id of `run_dir`: the recorded one, or a new one that rank 0 records for later runs."""
    path = Path(run_dir) / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # W&B ids: lower-case letters and digits
    if is_launch_rank_zero():
        atomic_write_text(path, run_id + "\n")
    return run_id
