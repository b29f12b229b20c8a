"""NaN/Inf losses: stop with the step named (default) or skip the batch; never checkpoint NaN weights.

`on_nonfinite_loss=error` checks the loss before every backward pass (`on_before_backward`, which
manual optimisation's `manual_backward` calls too) and raises `NonFiniteLossError` naming the epoch,
batch and global step. The raise happens before the backward and the optimiser step, so the
weights stay finite and `last.ckpt` (written at the last good step or epoch boundary) is kept.

`on_nonfinite_loss=skip` (automatic optimisation only) makes `training_step` return None for such a
batch, which Lightning documents as "skip this batch": no backward, so every gradient stays None and
the optimiser leaves every parameter (and its momentum) untouched. `global_step` and a per-step LR
scheduler still advance by one. Every rank takes the same decision, so DDP does not hang.

Whatever the mode, a checkpoint whose weights hold NaN/Inf is refused (`on_save_checkpoint`), so a
blow-up that slips past the loss check (finite loss, infinite gradient) cannot overwrite the last
good `last.ckpt`.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytorch_lightning as L
import torch
from pytorch_lightning import Callback

log = logging.getLogger(__name__)

MODES = ("error", "skip")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def loss_of(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        return output.get("loss")
    return None


class NonFiniteLossGuard(Callback):
    """
    Args:
        mode: `error` (stop) or `skip` (drop the batch; automatic optimisation only).
        checkpoint: the run's `last.ckpt`, named in the error message.
    """

    def __init__(self, mode: str = "error", checkpoint: str | Path | None = None):
        if mode not in MODES:
            raise ValueError(f"on_nonfinite_loss={mode!r}: expected one of {list(MODES)}")
        self.mode = mode
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.skipped: list[int] = []  # global steps whose batch was skipped

    def where(self, trainer: L.Trainer) -> str:
        return (f"epoch {trainer.current_epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx}, "
                f"global step {trainer.global_step}")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.mode != "skip":
            return
        if not pl_module.automatic_optimization:
            raise ValueError(f"on_nonfinite_loss=skip needs automatic optimisation, but {type(pl_module).__name__} "
                             "optimises manually; use on_nonfinite_loss=error")
        if getattr(pl_module.training_step, "_skips_nonfinite", False):
            return
        step = pl_module.training_step

        @functools.wraps(step)
        def guarded(*args, **kwargs):
            out = step(*args, **kwargs)
            loss = loss_of(out)
            finite = loss is None or bool(torch.isfinite(loss.detach()).all())
            if not trainer.strategy.reduce_boolean_decision(finite, all=True):
                self.skipped.append(trainer.global_step)
                log.warning("non-finite training loss at %s: batch skipped (on_nonfinite_loss=skip; %d skipped so far)",
                            self.where(trainer), len(self.skipped))
                return None
            return out

        guarded._skips_nonfinite = True
        pl_module.training_step = guarded

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return
        kept = self.checkpoint if self.checkpoint and self.checkpoint.is_file() else None
        raise NonFiniteLossError(
            f"non-finite training loss ({float(loss.detach().float().mean())}) at {self.where(trainer)}; "
            f"stopped before the backward pass, so the weights are still finite. "
            + (f"The last good checkpoint is {kept} (rerun to resume from it, e.g. with a lower stage.lr). "
               if kept else "No checkpoint was written yet. ")
            + "Set on_nonfinite_loss=skip to skip such batches instead.")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        bad = [k for k, v in checkpoint.get("state_dict", {}).items()
               if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteLossError(
                f"refusing to write a checkpoint at {self.where(trainer)}: weights {bad[:3]} hold NaN/Inf "
                f"({len(bad)} tensors); the previous checkpoint is kept")
