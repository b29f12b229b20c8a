"""`last.ckpt` at every epoch end and every `checkpoint_every_n_steps` training batches.

Lightning 2.6's `ModelCheckpoint(save_last=True, save_top_k=0)` writes `last.ckpt` only when a
top-k checkpoint was written at the same step, i.e. never before `on_train_end` when top-k is 0
(`ModelCheckpoint.on_validation_end`: "Only save last checkpoint if a checkpoint was actually saved
in this step"). A killed run then lost all its training. This callback writes `last.ckpt` itself,
through the Trainer (so Lightning's resume state and every callback's state are in it), at:

- the end of every training epoch (`on_train_epoch_end`, after that epoch's validation and after the
  LightningModule's own `on_train_epoch_end`): a
  resume from it replays the following epochs exactly (see RNGState);
- every `every_n_steps` training batches (counted over the whole run, so manual optimisation with
  several optimiser steps per batch counts batches, not `global_step`): a SIGKILL loses at most
  that many batches; resuming from such a mid-epoch checkpoint keeps the step count and the
  schedule but draws the rest of that epoch in a new order.
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as L
from pytorch_lightning.callbacks import Checkpoint


class LastCheckpoint(Checkpoint):
    """A `Checkpoint` (not a plain Callback) so that Lightning runs its `on_train_epoch_end` after the
    LightningModule's, as it does for ModelCheckpoint: state a stage sets there (C²AM's polarity decision
    after its last epoch) is in the saved file."""

    def __init__(self, path: str | Path, every_n_steps: int | None = None):
        if every_n_steps is not None and int(every_n_steps) < 1:
            raise ValueError(f"checkpoint_every_n_steps={every_n_steps}: expected a positive integer or null")
        self.path = Path(path)
        self.every_n_steps = int(every_n_steps) if every_n_steps else None

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # full state (says so: no info line per save)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not self.every_n_steps:
            return
        done = trainer.fit_loop.epoch_loop.total_batch_idx + 1  # batches finished in the whole run
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches  # the epoch end saves right after
        if done % self.every_n_steps == 0 and not last_of_epoch:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)
