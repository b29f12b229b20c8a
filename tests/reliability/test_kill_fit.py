"""Killing `fit` and running the same command again.

- SIGKILL after a checkpoint, at an epoch boundary or mid-epoch (`checkpoint_every_n_steps`), with 0 or
  2 loader workers: the resumed run ends with exactly the weights and metrics of an uninterrupted run.
  Exact (not a tolerance) because everything that decides the remaining batches is restored: weights,
  optimiser and scheduler state and loop counters (Lightning), the RNG states (RNGState), and the
  training order: the permutation of each epoch comes from (seed, epoch), each sample's augmentation
  from (seed, epoch, position), and the loader's position in the epoch travels in the checkpoint
  (wsss/data/sampler.py). Both runs use one thread with deterministic algorithms, so every reduction
  adds in the same order.
- The number of workers does not change the result at all (same order, same augmentations).
- SIGUSR1 / SIGTERM (what SLURM sends): last.ckpt is written at the next step boundary (mid-epoch),
  the process exits with 128 + signal after a log line naming the checkpoint, and rerunning finishes
  the schedule with the weights of the uninterrupted run.
"""
import json
import signal

import pytest
import torch

from tests.reliability.common import (EPOCHS, STEPS_PER_EPOCH, finish, load_ckpt, run_dir_of, run_in_process, start,
                                      wait_for)

pytestmark = pytest.mark.timeout(900)

# batch 2: 8 steps an epoch, so that checkpoints after batches 3 and 6 are both mid-epoch
MID_EPOCH = ["stage.batch_size=2", "checkpoint_every_n_steps=3"]


@pytest.fixture(scope="module")
def runs(module_tmp):
    return module_tmp("runs")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "data-reliability"


def uninterrupted(runs, data_dir, name, *overrides):
    run_dir = run_dir_of(runs, name)
    metrics = run_in_process(run_dir, data_dir, "tasks=[fit]", *overrides)
    return run_dir, metrics


@pytest.fixture(scope="module")
def straight(runs, data_dir):
    return uninterrupted(runs, data_dir, "straight")


@pytest.fixture(scope="module")
def straight_mid(runs, data_dir):
    return uninterrupted(runs, data_dir, "straight_mid", *MID_EPOCH)


def assert_same_training(run_dir, metrics, reference_dir, reference_metrics, steps):
    final = load_ckpt(run_dir / "checkpoints" / "last.ckpt")
    reference = load_ckpt(reference_dir / "checkpoints" / "last.ckpt")
    assert final["global_step"] == reference["global_step"] == steps
    differ = [k for k, v in reference["state_dict"].items() if not torch.equal(final["state_dict"][k], v)]
    assert differ == [], f"{len(differ)} of {len(reference['state_dict'])} tensors differ, e.g. {differ[:3]}"
    assert metrics == reference_metrics


def test_two_workers_train_exactly_as_none(runs, data_dir, straight):
    run_dir, metrics = uninterrupted(runs, data_dir, "workers2", "num_workers=2")
    assert_same_training(run_dir, metrics, *straight, EPOCHS * STEPS_PER_EPOCH)


@pytest.mark.parametrize("workers,where", [(0, "epoch"), (2, "epoch"), (2, "mid-epoch")])
def test_sigkill_after_checkpoint_then_rerun_matches_uninterrupted_run(runs, data_dir, straight, straight_mid,
                                                                         workers, where):
    extra = [f"num_workers={workers}", *(MID_EPOCH if where == "mid-epoch" else [])]
    steps_per_epoch = 8 if where == "mid-epoch" else STEPS_PER_EPOCH
    name = f"killed_{workers}_{where}"
    run_dir = run_dir_of(runs, name)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    proc = start(runs, data_dir, name, "tasks=[fit]", *extra)
    wait_for(ckpt.is_file, proc, poll=0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_ckpt(ckpt)["global_step"]
    assert 0 < step < EPOCHS * steps_per_epoch
    assert (step % steps_per_epoch == 0) == (where == "epoch"), f"killed after step {step}"

    metrics = run_in_process(run_dir, data_dir, "tasks=[fit]", *extra)  # the same command again

    assert_same_training(run_dir, metrics, *(straight_mid if where == "mid-epoch" else straight),
                         EPOCHS * steps_per_epoch)


@pytest.mark.parametrize("sig", [signal.SIGUSR1])
def test_signal_saves_at_step_boundary_exits_and_rerun_matches_uninterrupted_run(runs, data_dir, straight, sig):
    run_dir = run_dir_of(runs, f"signal{int(sig)}")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    proc = start(runs, data_dir, f"signal{int(sig)}", "tasks=[fit]", "num_workers=2")
    wait_for(ckpt.is_file, proc)
    first = load_ckpt(ckpt)["global_step"]
    proc.send_signal(sig)
    code, out = finish(proc)
    assert code == 128 + int(sig), out[-3000:]
    assert f"received {sig.name}: saved {ckpt}" in out
    assert "Traceback" not in out
    saved = load_ckpt(ckpt)
    assert saved["global_step"] > first  # written by the signal, one step boundary later at least

    metrics = run_in_process(run_dir, data_dir, "tasks=[fit]", "num_workers=2")
    assert_same_training(run_dir, metrics, *straight, EPOCHS * STEPS_PER_EPOCH)
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert {k: v for k, v in recorded.items() if k != "_invocation"} == metrics  # + the invocation of each key
