"""What the CAM-generator stages (puzzle, occse, poc, pnoc) share: one objective per batch.

A generator stage defines `generator_step(images, labels, step, total)`; the classifier's training
loop (`CAMStage.training_step` -> `compute_loss`) runs it, and P-NOC's manual loop reuses it for the
generator's update. `step`/`total` are the batch counters of the loss-weight ramps
(`Stage.batch_position`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from wsss.losses.classification import multilabel_soft_margin
from wsss.schedules import linear_ramp
from wsss.stages.cam import CAMStage


class GeneratorStep(NamedTuple):
    """One evaluation of a CAM generator's objective on a batch."""

    loss: torch.Tensor
    parts: dict                  # named loss terms and their weights, for logging
    cams: torch.Tensor           # raw CAMs of the full images (B, C, h, w), attached to the graph
    erased: torch.Tensor | None  # class r erased per image (OC-CSE family), else None


def ramp(spec, step: int, total: int) -> float:
    """A `[start, end, fraction]` config entry at `step` of `total` (`wsss.schedules.linear_ramp`)."""
    if len(spec) != 3:
        raise ValueError(f"a ramp is [start, end, fraction of the run], got {spec!r}")
    return linear_ramp(step, total, float(spec[0]), float(spec[1]), float(spec[2]))


def as_loggable(parts: dict) -> dict:
    """Loss terms as detached tensors and ramp weights as tensors, for `log_dict`."""
    return {k: v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            for k, v in parts.items()}


class GeneratorStage(CAMStage):
    """A CAM stage whose loss is `generator_step`, evaluated at the current ramp position."""

    def classification_term(self, images: torch.Tensor,
                            labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``L_cls`` of the full images (smoothed targets when `label_smoothing` > 0) and their raw CAMs."""
        logits, cams = self.net(images)
        return multilabel_soft_margin(logits, labels, self.scfg.label_smoothing), cams

    def generator_step(self, images: torch.Tensor, labels: torch.Tensor, step: int,
                       total: int) -> GeneratorStep:
        raise NotImplementedError

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        step, total = self.batch_position()
        out = self.generator_step(batch["image"], batch["label"], step, total)
        return out.loss, as_loggable(out.parts)
