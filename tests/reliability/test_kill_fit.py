"""Killing `fit` and running the same command again.

- SIGKILL after an epoch-end checkpoint: the resumed run ends with exactly the weights and
  metrics of an uninterrupted run. Exact (not a tolerance) because everything that decides the
  remaining epochs is restored: weights, optimiser and scheduler state and loop counters
  (Lightning), the RNG states that draw the shuffle and the augmentations (RNGState), and both
  runs use one thread with deterministic algorithms, so every reduction adds in the same order.
- SIGUSR1 / SIGTERM (what SLURM sends): last.ckpt is written at the next step boundary, the
  process exits with 128 + signal after a log line naming the checkpoint, and rerunning finishes
  the schedule with the same number of optimiser steps as an uninterrupted run. A mid-epoch
  checkpoint does not replay the interrupted epoch's remaining batches in the same order
  (Lightning restarts the loader), so only the step count is compared there.
"""
import json
import signal

import pytest
import torch

from tests.reliability.common import (EPOCHS, STEPS_PER_EPOCH, finish, load_ckpt, run_dir_of, run_in_process, start,
                                      wait_for)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def straight(runs, tmp_path_factory):
    """The uninterrupted run (in-process)."""
    data_dir = tmp_path_factory.getbasetemp() / "data-reliability"
    run_dir = run_dir_of(runs, "straight")
    metrics = run_in_process(run_dir, data_dir, "tasks=[fit]")
    return data_dir, run_dir, metrics


def test_sigkill_after_epoch_checkpoint_then_rerun_matches_uninterrupted_run(runs, straight):
    data_dir, straight_dir, straight_metrics = straight
    run_dir = run_dir_of(runs, "killed")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    proc = start(runs, data_dir, "killed", "tasks=[fit]")
    wait_for(ckpt.is_file, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = load_ckpt(ckpt)
    assert at_kill["global_step"] % STEPS_PER_EPOCH == 0 and at_kill["global_step"] < EPOCHS * STEPS_PER_EPOCH

    metrics = run_in_process(run_dir, data_dir, "tasks=[fit]")  # the same command again

    final, reference = load_ckpt(ckpt), load_ckpt(straight_dir / "checkpoints" / "last.ckpt")
    assert final["global_step"] == reference["global_step"] == EPOCHS * STEPS_PER_EPOCH
    for name, value in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][name], value), name
    assert metrics == straight_metrics


@pytest.mark.parametrize("sig", [signal.SIGUSR1])
def test_signal_saves_at_step_boundary_exits_and_rerun_finishes(runs, straight, sig):
    data_dir, _, _ = straight
    run_dir = run_dir_of(runs, f"signal{int(sig)}")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    proc = start(runs, data_dir, f"signal{int(sig)}", "tasks=[fit]")
    wait_for(ckpt.is_file, proc)
    first = load_ckpt(ckpt)["global_step"]
    proc.send_signal(sig)
    code, out = finish(proc)
    assert code == 128 + int(sig), out[-3000:]
    assert f"received {sig.name}: saved {ckpt}" in out
    assert "Traceback" not in out
    saved = load_ckpt(ckpt)
    assert saved["global_step"] > first  # written by the signal, one step boundary later at least

    metrics = run_in_process(run_dir, data_dir, "tasks=[fit]")
    assert load_ckpt(ckpt)["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert "val/map" in metrics
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
