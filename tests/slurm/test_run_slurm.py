"""run.py on the real local SLURM cluster: an sbatch array of two tiny runs and a Hydra multirun (submitit).

Skipped as a whole when `sinfo` does not answer (bring the cluster up with `sudo slurm/local-cluster.sh up`).
"""
from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY
from tests.slurm.test_local_cluster import REPO, _cluster_answer, _job_env

_reason = _cluster_answer()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

CPU_JOB = ["--gpus-per-node=0", "--cpus-per-task=1", "--mem=1500M", "--time=20"]
LAUNCHER = ["hydra/launcher=slurm_local", "hydra.launcher.timeout_min=20", "hydra.launcher.mem_gb=2"]


def tiny(tmp_path: Path) -> list[str]:
    # Progress bars stay on: under SLURM the runs log a TQDM bar (readable in the job's log file).
    settings = [o for o in TINY if not o.startswith("trainer.enable_progress_bar")]
    return [*settings, f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_dir={tmp_path / 'data'}"]


def job_dir(sweep: Path, item: str) -> Path:
    """The job folder (<number>_<key>=<value>,...) whose swept values hold `item`."""
    found = [d for d in sweep.iterdir() if d.is_dir() and item in d.name.partition("_")[2].split(",")]
    assert len(found) == 1, (item, sorted(d.name for d in sweep.iterdir()))
    return found[0]


def check_run(run_dir: Path, key: str) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics[key] <= 1.0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return metrics


def test_sbatch_array_runs_two_experiments(tmp_path: Path):
    experiments = tmp_path / "experiments.txt"
    lines = [shlex.join(["stage=classifier", f"run_name=job{i}", f"seed={i}", *tiny(tmp_path)]) for i in (0, 1)]
    experiments.write_text("# two tiny classifier runs\n" + "\n".join(lines) + "\n")
    done = subprocess.run(
        ["sbatch", "--wait", "--parsable", "--array=0-1", *CPU_JOB, f"--output={tmp_path}/%x_%A_%a.out",
         "slurm/array.sbatch", str(experiments)],
        cwd=REPO, env=_job_env(), capture_output=True, text=True, timeout=900)
    logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.out")}
    assert done.returncode == 0, (done.stderr, logs)
    runs = tmp_path / "runs" / "classifier" / "synthetic" / "resnet18"
    first, second = (check_run(runs / f"job{i}", "cams/val/miou") for i in (0, 1))
    assert first["cams/val/miou"] != second["cams/val/miou"]  # two seeds, two experiments
    assert all("exit status 0" in log for log in logs.values()) and len(logs) == 2


def test_hydra_multirun_through_the_submitit_launcher(tmp_path: Path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = subprocess.run(
        [sys.executable, "run.py", "-m", *LAUNCHER, "seed=0,1", "tasks=[fit]", *tiny(tmp_path)],
        cwd=REPO, env=_job_env(WSSS_ROOT=str(REPO)), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [sweep] = (tmp_path / "runs" / "multirun" / "classifier" / "synthetic" / "resnet18").glob("default-*")
    jobs = [job_dir(sweep, f"seed={seed}") for seed in (0, 1)]  # named from the swept values
    for job in jobs:
        check_run(job, "val/map")
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert sorted(r["job"] for r in rows) == sorted(j.name for j in jobs)
    assert all(r["status"] == "done" for r in rows)
    script = next((sweep / ".submitit").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --signal=USR1@90" in script


@pytest.mark.slow
def test_ddp_sweep_runs_through_slurm(tmp_path: Path):
    """The combination refused on the local launcher: two CPU ranks per job, created by SLURM."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = subprocess.run(
        [sys.executable, "run.py", "-m", *LAUNCHER, "trainer=ddp_cpu", "seed=0", "tasks=[fit]", *tiny(tmp_path)],
        cwd=REPO, env=_job_env(WSSS_ROOT=str(REPO)), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [sweep] = (tmp_path / "runs" / "multirun" / "classifier" / "synthetic" / "resnet18").glob("default-*")
    job = sweep / "0"  # nothing swept: the job's number only
    check_run(job, "val/map")
    logs = {p.name: p.read_text() for p in (job.parent / ".submitit").rglob("*_log.out")}
    assert len(logs) == 2, sorted(logs)  # one log per SLURM task
    text = "".join(logs.values())
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text
