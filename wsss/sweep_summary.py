"""sweep_summary.md / .csv: which value of the swept keys won.

One row per job of this sweep (folders holding `.hydra/overrides.yaml`, started since the sweep's record), with
one column per key whose value differs between jobs, then the job's scalar metrics (rates such as mIoU, mAP and
F1 in percent, counts as integers). Finished jobs are sorted by the sweep's objective (by the first mIoU when
no objective is set), best first, and the best one is marked; failed jobs are listed with their error's first
line (`error.txt`, written by wsss/sweep.py), jobs without metrics.json nor error as not finished. Job folders
are named by their number and swept values (wsss/sweep_dirs.py); the CSV's `job` column holds each row's
folder.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsss.artifacts import atomic_write_text
from wsss.sweep_record import ERROR, SweepRecord, override_key, short_value

SLACK_S = 2.0  # file-system timestamps vs the launching process's clock
RATES = {"miou", "map", "f1", "f2", "iou", "accuracy", "acc", "precision", "recall", "coverage"}
BEST = "★"


@dataclass
class Job:
    folder: str                                  # relative to the sweep folder
    overrides: dict[str, str]
    status: str                                  # done | failed | not finished
    error: str = ""
    metrics: dict[str, float | int] = field(default_factory=dict)


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


def scalar_metrics(metrics: dict) -> dict[str, float | int]:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def read_job(sweep_dir: Path, job: Path) -> Job:
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    values = {override_key(o): o.split("=", 1)[1] for o in map(str, overrides) if "=" in o}
    folder = job.relative_to(sweep_dir).as_posix()
    folder = "" if folder == "." else folder
    if (job / ERROR).is_file():  # written by this attempt (removed when a job starts): a stale metrics.json loses
        first = (job / ERROR).read_text().splitlines()
        return Job(folder, values, "failed", error=first[0] if first else "")
    if (job / "metrics.json").is_file():
        return Job(folder, values, "done", metrics=scalar_metrics(json.loads((job / "metrics.json").read_text())))
    return Job(folder, values, "not finished")


def varying_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job (a key missing from a job counts as a value)."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def is_rate(metric: str) -> bool:
    last = metric.rsplit("/", 1)[-1]
    return last in RATES or last.endswith("_miou")


def metric_columns(jobs: list[Job], objective: str | None) -> list[str]:
    """The objective, mIoUs, other rates, then the rest; validation first, then alphabetical, within each."""
    names = {m for j in jobs for m in j.metrics}

    def rank(m: str) -> tuple:
        miou = m.rsplit("/", 1)[-1].endswith("miou")
        return (m != objective, not miou, not is_rate(m), "/val/" not in f"/{m}/", m)

    return sorted(names, key=rank)


def ranking_metric(columns: list[str], objective: str | None) -> str | None:
    if objective:
        return objective
    # monitor/* (e.g. the per-epoch train CAM mIoU, thesis Table 7) is a logged number, never a selection criterion
    return next((m for m in columns if m.rsplit("/", 1)[-1].endswith("miou") and not m.startswith("monitor/")), None)


def ranked(jobs: list[Job], metric: str | None, direction: str) -> list[Job]:
    """Finished jobs best first (those without the metric last), then the failed and unfinished ones."""
    done = [j for j in jobs if j.status == "done"]
    if metric:
        sign = 1 if direction == "minimize" else -1
        done.sort(key=lambda j: (metric not in j.metrics, sign * j.metrics.get(metric, 0)))
    return done + [j for j in jobs if j.status != "done"]


def cell(metric: str, value: Any, decimals: int = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if is_rate(metric):
        return f"{100 * value:.{decimals}f}"
    return f"{value:.4g}"


@dataclass
class Table:
    keys: list[str]
    metrics: list[str]
    by: str | None
    direction: str
    rows: list[Job]

    @property
    def best(self) -> Job | None:
        first = self.rows[0] if self.rows and self.by else None
        return first if first and first.status == "done" and self.by in first.metrics else None


def build_table(jobs: list[Job], record: SweepRecord | None) -> Table:
    objective = record.objective if record else None
    direction = record.direction if record else "maximize"
    metrics = metric_columns(jobs, objective)
    by = ranking_metric(metrics, objective)
    return Table(varying_keys(jobs), metrics, by, direction, ranked(jobs, by, direction))


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*table.keys, *table.metrics, "best", "status", "error", "job"])
    for j in table.rows:
        writer.writerow([*(j.overrides.get(k, "") for k in table.keys),
                         *(cell(m, j.metrics.get(m), decimals=4) for m in table.metrics),
                         BEST if j is table.best else "", j.status, j.error, j.folder])
    return buf.getvalue()


def md_row(values: list[str]) -> str:
    return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"


def label(job: Job, keys: list[str]) -> str:
    return " ".join(f"{k}={job.overrides.get(k, '')}" for k in keys) or job.folder


def to_markdown(table: Table, sweep_dir: Path, record: SweepRecord | None) -> str:
    done = [j for j in table.rows if j.status == "done"]
    failed = [j for j in table.rows if j.status == "failed"]
    waiting = [j for j in table.rows if j.status == "not finished"]
    order = "lowest" if table.direction == "minimize" else "highest"
    lines = [f"# Sweep {record.group if record else sweep_dir.name}", ""]
    if record:
        lines += [f"`python run.py -m {' '.join(record.command)}` (W&B group `{record.group}`)", ""]
    lines += [f"{len(table.rows)} jobs: {len(done)} done, {len(failed)} failed, {len(waiting)} not finished. "
              + (f"Sorted by `{table.by}`, {order} first; {BEST} marks the best. " if table.by
                 else "Not ranked: no objective= set and no mIoU metric. ")
              + "Rates (mIoU, mAP, F1) in %, counts as integers.", ""]
    columns = [*table.keys, *table.metrics, "best"]
    lines += [md_row(columns), "|" + "---|" * len(columns)]
    lines += [md_row([*(short_value(j.overrides.get(k, "")) for k in table.keys),
                      *(cell(m, j.metrics.get(m)) for m in table.metrics),
                      BEST if j is table.best else ""]) for j in done]
    for title, jobs in (("Failed", failed), ("Not finished (running, or killed)", waiting)):
        if jobs:
            lines += ["", f"## {title}", ""]
            lines += [f"- {label(j, table.keys)}: {j.error or 'no metrics.json yet'} "
                      f"(`{j.folder}/{ERROR if j.error else ''}`)" for j in jobs]
    lines += ["", f"Job folders: `{sweep_dir}/<job>`, the `job` column of sweep_summary.csv."]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, record: SweepRecord | None = None, since: float | None = None) -> list[Job]:
    """Writes sweep_summary.csv and .md for the jobs started since `since` (default: the record's start)."""
    since = since if since is not None else (record.started if record else None)
    jobs = [read_job(sweep_dir, d) for d in job_dirs(sweep_dir, since)]
    table = build_table(jobs, record)
    atomic_write_text(sweep_dir / "sweep_summary.csv", to_csv(table))
    atomic_write_text(sweep_dir / "sweep_summary.md", to_markdown(table, sweep_dir, record))
    return table.rows
