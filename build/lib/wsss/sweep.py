"""Sweep summary: at the end of a multirun, one CSV + Markdown table of every job's final metrics.

Hydra callback (conf/hydra/default.yaml `hydra.callbacks.sweep_summary`). It runs in the launching process
(also with the SLURM launcher, whose jobs write to the shared file system), reads each job folder's
`.hydra/overrides.yaml` and `metrics.json`, and writes `sweep_summary.csv` and `sweep_summary.md` in the
sweep folder. Run folders are named from the overrides, so a sweep run again into the same folder resumes
its jobs; the summary lists the jobs started by this multirun (their `.hydra/` is rewritten at job start),
and a job without metrics.json (failed or still running) appears with status `no metrics`.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from wsss.artifacts import atomic_write_text

log = logging.getLogger("wsss.sweep")
SLACK_S = 2.0  # file-system timestamps vs this process's clock


def job_dirs(sweep_dir: Path, since: float | None = None) -> list[Path]:
    """Job folders under a sweep folder (holding .hydra/overrides.yaml), started at or after `since`."""
    found = []
    for folder, subdirs, _ in os.walk(sweep_dir):
        overrides = Path(folder) / ".hydra" / "overrides.yaml"
        if overrides.is_file():
            subdirs[:] = []  # a job folder: its artifacts hold no other jobs
            if since is None or overrides.stat().st_mtime >= since - SLACK_S:
                found.append(Path(folder))
        else:
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
    return sorted(found)


def scalar_metrics(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def collect(sweep_dir: Path, since: float | None = None) -> list[dict[str, Any]]:
    """One row per job: job (folder relative to the sweep folder), overrides, status, then its metrics."""
    rows = []
    for job in job_dirs(sweep_dir, since):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        metrics_path = job / "metrics.json"
        metrics = scalar_metrics(json.loads(metrics_path.read_text())) if metrics_path.is_file() else {}
        rel = job.relative_to(sweep_dir).as_posix()
        rows.append({"job": rel if rel != "." else "", "overrides": " ".join(overrides),
                     "status": "done" if metrics_path.is_file() else "no metrics", **metrics})
    return rows


def columns_of(rows: list[dict]) -> list[str]:
    head = ["job", "overrides", "status"]
    return head + sorted({k for r in rows for k in r} - set(head))


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, since: float | None = None) -> list[dict]:
    rows = collect(sweep_dir, since)
    columns = columns_of(rows)
    atomic_write_text(sweep_dir / "sweep_summary.csv", to_csv(rows, columns))
    atomic_write_text(sweep_dir / "sweep_summary.md", f"# Sweep {sweep_dir}\n\n" + to_markdown(rows, columns))
    return rows


class SweepSummary(Callback):
    """Writes sweep_summary.csv / .md into hydra.sweep.dir when a multirun ends."""

    def __init__(self) -> None:
        self.started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows = write_summary(sweep_dir, self.started)
        done = sum(r["status"] == "done" for r in rows)
        log.info("sweep summary of %d jobs (%d with metrics): %s", len(rows), done, sweep_dir / "sweep_summary.md")
