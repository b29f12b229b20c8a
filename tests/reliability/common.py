"""Shared settings of the reliability tests: an even smaller run than TINY, in-process or as `python run.py`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from tests.helpers import ROOT, TINY, compose_config

# 16 train images of 32 px, batch 4 -> 4 steps per epoch; 3 epochs; fit only.
SMALL = [*TINY, "dataset.args.image_size=32", "dataset.args.splits={train:16,val:4}", "dataset.crop_size=32",
         "dataset.min_size=28", "dataset.max_size=36", "stage.batch_size=4", "stage.max_epochs=3",
         "trainer.deterministic=true", "seed=0"]
STEPS_PER_EPOCH = 4
EPOCHS = 3


def run_dir_of(runs_dir: Path, run_name: str, stage: str = "classifier") -> Path:
    return runs_dir / stage / "synthetic" / "resnet18" / run_name


def start(runs_dir: Path, data_dir: Path, run_name: str, *overrides: str) -> subprocess.Popen:
    """`python run.py ...` in the background, one thread, its output captured."""
    args = [sys.executable, "run.py", *SMALL, *overrides, f"run_name={run_name}", f"paths.runs_dir={runs_dir}",
            f"paths.data_dir={data_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300.0, poll: float = 0.02) -> None:
    """Poll until predicate() holds; fail with the process output if it ends or times out first."""
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before the condition held:\n"
                                 f"{proc.stdout.read()[-4000:]}")
        if time.monotonic() > end:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("timed out waiting for the process")
        time.sleep(poll)


def finish(proc: subprocess.Popen, timeout: float = 300.0) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def run_in_process(run_dir: Path, data_dir: Path, *overrides: str) -> dict:
    from wsss.tasks import run

    with one_thread():
        return run(compose_config(run_dir, data_dir, [*SMALL, *overrides, f"run_name={run_dir.name}"], tiny=False))


@contextmanager
def one_thread():
    """Same thread count as the subprocesses (OMP_NUM_THREADS=1): CPU reductions then add in the same order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
