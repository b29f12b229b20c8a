"""Pre-emption on the real local SLURM: SIGUSR1 (what `--signal=USR1@90` sends before the time limit)
during training saves last.ckpt, requeues the job, and the requeued job resumes and finishes."""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY
from tests.slurm.test_local_cluster import REPO, _cluster_answer, _final_state, _job_env

_reason = _cluster_answer()
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

EPOCHS = 40  # 3 steps an epoch: long enough to be signalled mid-training


def wait_for(predicate, what: str, timeout: float = 300.0) -> None:
    stop = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < stop, f"timed out waiting for {what}"
        time.sleep(0.5)


def show(job: str) -> str:
    return subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30).stdout


def submit(tmp_path: Path, line: list[str]) -> tuple[str, Path]:
    """sbatch slurm/array.sbatch with one line of overrides; (array task id, its log file)."""
    (tmp_path / "experiments.txt").write_text(shlex.join(line) + "\n")
    log = tmp_path / "job.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--array=0", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=2G", "--time=20",
         f"--output={log}", "slurm/array.sbatch", str(tmp_path / "experiments.txt")],
        cwd=REPO, env=_job_env(), capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    return f"{submitted.stdout.strip().split(';')[0]}_0", log


def release_requeued(job: str) -> str:
    """Start the requeued job now (SLURM holds it for a while, BeginTime) and return its final state.

    slurmd refuses a launch whose credential dates from the same second as the revocation of the previous
    run's ("Killing non-startable batch job: Job credential revoked", then FAILED), so the release waits past
    that second: this race failed the predict test once in CI when the release came 0.3 s after the requeue."""
    wait_for(lambda: "JobState=PENDING" in show(job), "the requeued job to be pending", timeout=120)
    time.sleep(2.0)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], timeout=30)
    return _final_state(job, deadline_s=600)


def test_sigusr1_checkpoints_requeues_and_the_job_resumes_to_the_end(tmp_path: Path):
    settings = [o for o in TINY if not o.startswith("stage.max_epochs")]
    line = ["stage=classifier", "run_name=preempted", f"stage.max_epochs={EPOCHS}", "tasks=[fit]", *settings,
            f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_dir={tmp_path / 'data'}"]
    job, log = submit(tmp_path, line)
    run_dir = tmp_path / "runs" / "classifier" / "synthetic" / "resnet18" / "preempted"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    try:
        wait_for(ckpt.is_file, "the first epoch's last.ckpt")
        assert subprocess.run(["scancel", "--signal=USR1", job], timeout=30).returncode == 0
        wait_for(lambda: "was requeued" in log.read_text(), "the requeue")
        state = release_requeued(job)
    finally:
        subprocess.run(["scancel", job], timeout=30)
    text = log.read_text()
    assert state == "COMPLETED", text[-3000:]
    assert "received SIGUSR1" in text and "restart 1" in text, text[-3000:]  # the job ran twice
    assert "resuming from" in text and text.count("exit status 0") == 1, text[-3000:]
    final = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert final["epoch"] == EPOCHS - 1 or final["global_step"] == EPOCHS * 3
    assert "val/map" in json.loads((run_dir / "metrics.json").read_text())


def test_sigusr1_during_predict_requeues_and_the_job_writes_the_rest(tmp_path: Path):
    """Predict has no checkpoint to save: the signal stops the pass after the current image (no manifest),
    requeues the job, and the requeued job writes only the missing files and then the manifest."""
    settings = [o for o in TINY if not o.startswith("stage.inference.scales")]
    line = ["stage=classifier", "run_name=predict_preempted", "tasks=[predict]", "dataset.predict_splits=[train]",
            "stage.inference.scales=[1.0,1.5,2.0,2.5,3.0,3.5]", *settings,  # slow enough to be signalled midway
            f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_dir={tmp_path / 'data'}"]
    job, log = submit(tmp_path, line)
    cams = tmp_path / "runs" / "classifier" / "synthetic" / "resnet18" / "predict_preempted" / "cams" / "train"
    try:
        wait_for(lambda: cams.is_dir() and any(cams.glob("*.npz")), "the first CAM file")
        assert subprocess.run(["scancel", "--signal=USR1", job], timeout=30).returncode == 0
        wait_for(lambda: "the requeued SLURM job writes the rest" in log.read_text(), "the requeue")
        assert not (cams / "manifest.json").exists()
        state = release_requeued(job)
    finally:
        subprocess.run(["scancel", job], timeout=30)
    text = log.read_text()
    assert state == "COMPLETED", text[-3000:]
    assert "received SIGUSR1: stopped predict after batch" in text and "restart 1" in text, text[-3000:]
    assert json.loads((cams / "manifest.json").read_text())["count"] == 24
