"""Sweeps: the summary of every job's metrics, run folders named from the overrides, and the DDP guard."""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY
from wsss.app import local_ddp_sweep_error
from wsss.sweep import SweepSummary, write_summary

BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def fake_job(sweep: Path, name: str, overrides: list[str], metrics: dict | None) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "cams" / ".hydra").mkdir(parents=True)  # artifact subfolders are not searched for jobs
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def test_summary_lists_every_job_with_its_final_metrics(tmp_path):
    fake_job(tmp_path, "seed=0,stage.lr=0.1", ["stage.lr=0.1", "seed=0"],
             {"cams/val/miou": 0.5, "cams/val/iou": {"a": 1.0}, "val/f1": 0.25})
    fake_job(tmp_path, "seed=1,stage.lr=0.1", ["stage.lr=0.1", "seed=1"], {"cams/val/miou": 0.75})
    fake_job(tmp_path, "seed=2,stage.lr=0.1", ["stage.lr=0.1", "seed=2"], None)  # failed job
    rows = write_summary(tmp_path)
    table = list(csv.DictReader((tmp_path / "sweep_summary.csv").open()))
    assert [r["job"] for r in table] == ["seed=0,stage.lr=0.1", "seed=1,stage.lr=0.1", "seed=2,stage.lr=0.1"]
    assert list(table[0]) == ["job", "overrides", "status", "cams/val/miou", "val/f1"]
    assert [r["status"] for r in table] == ["done", "done", "no metrics"]
    assert float(table[1]["cams/val/miou"]) == 0.75 and table[1]["val/f1"] == "" and table[0]["val/f1"] == "0.25"
    assert table[0]["overrides"] == "stage.lr=0.1 seed=0"
    md = (tmp_path / "sweep_summary.md").read_text()
    assert "| seed=1,stage.lr=0.1 | stage.lr=0.1 seed=1 | done | 0.7500 |  |" in md
    assert len(rows) == 3


def test_callback_summarises_only_the_jobs_of_this_multirun(tmp_path):
    from omegaconf import OmegaConf

    old = fake_job(tmp_path, "seed=9", ["seed=9"], {"m": 1.0})
    past = time.time() - 3600
    os.utime(old / ".hydra" / "overrides.yaml", (past, past))
    callback = SweepSummary()
    callback.on_multirun_start(OmegaConf.create({}))
    fake_job(tmp_path, "seed=0", ["seed=0"], {"m": 0.5})
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    jobs = [r["job"] for r in csv.DictReader((tmp_path / "sweep_summary.csv").open())]
    assert jobs == ["seed=0"]


@pytest.mark.parametrize("trainer, multirun, launcher, refused", [
    ({"strategy": "ddp", "devices": 2}, True, BASIC, True),
    ({"strategy": "ddp_find_unused_parameters_true", "devices": 4}, True, BASIC, True),
    ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, True, BASIC, True),
    ({"strategy": "ddp", "devices": 2}, True, SLURM, False),     # SLURM creates the ranks
    ({"strategy": "ddp", "devices": 2}, False, BASIC, False),    # a single run relaunches itself fine
    ({"strategy": "ddp_spawn", "devices": 2}, True, BASIC, False),  # no re-execution
    ({"strategy": "ddp", "devices": 1}, True, BASIC, False),
])
def test_local_multirun_with_ddp_is_refused(trainer, multirun, launcher, refused):
    error = local_ddp_sweep_error(trainer, multirun, launcher)
    assert (error is not None) == refused
    if refused:
        assert "hydra/launcher=slurm" in error and "BasicLauncher" in error


def run_py(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, HYDRA_FULL_ERROR="1"))


def test_local_ddp_multirun_fails_before_training(tmp_path):
    out = run_py("-m", "trainer=ddp_cpu", "seed=0,1", f"paths.runs_dir={tmp_path}", f"paths.data_dir={tmp_path}")
    assert out.returncode != 0
    assert "hydra/launcher=slurm" in out.stderr and "trainer.strategy=ddp" in out.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_multirun_names_run_dirs_from_overrides_resumes_and_summarises(tmp_path, data_dir):
    args = ["-m", *TINY, "tasks=[fit]", "stage.lr=0.05,0.1", f"paths.runs_dir={tmp_path}",
            f"paths.data_dir={data_dir}"]
    first = run_py(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "multirun" / "classifier" / "synthetic" / "resnet18" / "default"
    def overrides(d):
        f = d / ".hydra" / "overrides.yaml"
        return f.read_text() if f.is_file() else ""

    jobs = {lr: [d for d in sweep.iterdir() if f"stage.lr={lr}\n" in overrides(d)] for lr in ("0.05", "0.1")}
    assert all(len(found) == 1 for found in jobs.values()), jobs  # one folder per member, named from the overrides
    jobs = {lr: found[0] for lr, found in jobs.items()}
    for job in jobs.values():
        assert (job / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert sorted(r["job"] for r in rows) == sorted(j.name for j in jobs.values())
    assert all(r["status"] == "done" and 0 <= float(r["val/map"]) <= 1 for r in rows)
    again = run_py(*args)  # the same sweep again resumes every job from its last.ckpt
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout + again.stderr
    for job in jobs.values():
        assert f"resuming from {job / 'checkpoints' / 'last.ckpt'}" in out
