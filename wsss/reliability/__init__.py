"""Surviving kills, bad numbers and full disks.

- `last_checkpoint.LastCheckpoint`: last.ckpt every epoch and every `checkpoint_every_n_steps` batches.
- `signals.SignalCheckpoint`: SIGTERM / SIGUSR1 -> last.ckpt at the next step boundary, then a clean exit;
  during predict, a stop after the current batch (no manifest), with the SLURM requeue on SIGUSR1.
- `rng.RNGState`: RNG states travel in checkpoints (the training order itself: wsss/data/sampler.py).
- `rng.TorchSeededTransform`: per-sample augmentation seeds, from the sample's position in the epoch.
- `nonfinite.NonFiniteLossGuard`: stop (or skip the batch) on a NaN/Inf loss; never checkpoint NaN weights.
- `checkpoint_io.AtomicCheckpointIO`: a kill while `last.ckpt` is written leaves the old one intact.
- `disk.check_disk_for_predict`: fail before a predict pass that cannot fit on the disk.
- `run_lock.hold_run_folder`: one writer per run folder (`run.lock`; a second one refused, naming the holder).
- `children.run_child`: a pipeline step that ends with its pipeline.
- `history`: logs kept across reruns (metrics.csv appended, metrics.json merged, one W&B run per folder).
"""
from __future__ import annotations

from pathlib import Path

from pytorch_lightning import Callback

from wsss.reliability.checkpoint_io import AtomicCheckpointIO
from wsss.reliability.disk import check_disk_for_predict, check_free_space, estimate_artifact_bytes
from wsss.reliability.last_checkpoint import LastCheckpoint
from wsss.reliability.nonfinite import NonFiniteLossError, NonFiniteLossGuard
from wsss.reliability.rng import RNGState, TorchSeededTransform
from wsss.reliability.signals import SignalCheckpoint, StoppedBySignal

__all__ = ["reliability_callbacks", "AtomicCheckpointIO", "LastCheckpoint", "SignalCheckpoint", "StoppedBySignal",
           "RNGState", "TorchSeededTransform", "NonFiniteLossGuard", "NonFiniteLossError", "check_disk_for_predict",
           "check_free_space", "estimate_artifact_bytes"]


def reliability_callbacks(cfg: dict, run_dir: Path) -> list[Callback]:
    """The callbacks every Trainer of a run gets (tasks.build_trainer)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    return [NonFiniteLossGuard(cfg["on_nonfinite_loss"], last), RNGState(),
            LastCheckpoint(last, cfg["checkpoint_every_n_steps"]), SignalCheckpoint(last)]
