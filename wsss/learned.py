"""Did a step learn anything? Its score against the trivial prediction's on the same pixels.

A fit whose validation predictions (DeepLab) or whose CAMs at their best background threshold score no better
than predicting background everywhere learned nothing, however its loss fell. The run logs a warning saying
what to try and leaves `learned_nothing.json` in its run folder; the pipeline marks the step in its table and,
with `pipeline.stop_if_learned_nothing=true`, stops there.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from wsss.artifacts import atomic_write_json
from wsss.metrics.segmentation import mean_iou

log = logging.getLogger(__name__)

MARKER = "learned_nothing.json"
#: a score must beat the trivial one by more than this (mIoU as a fraction) to count as learned
DEFAULT_MARGIN = 0.02
ADVICE = {
    "deeplab": "start the backbone from a trained one (stage.backbone_checkpoint=<a CAM stage's last.ckpt>, or "
               "backbone.pretrained=true), give it more optimiser steps (stage.max_steps) or another stage.lr",
    "cams": "train longer (stage.max_epochs) or with another stage.lr; check the image labels",
}


def all_background_miou(confusion: torch.Tensor) -> float:
    """mIoU of predicting background (class 0) at every pixel counted in `confusion` (rows: ground truth)."""
    trivial = torch.zeros_like(confusion)
    trivial[..., 0] = confusion.sum(-1)
    return float(mean_iou(trivial))


def check(run_dir: str | Path, what: str, score: float, trivial: float, advice: str,
          margin: float = DEFAULT_MARGIN) -> bool:
    """Warn and write the marker when `score` ≤ `trivial` + `margin`; True if the step learned nothing."""
    if score > trivial + margin:
        return False
    message = (f"{what} learned nothing: {100 * score:.1f} % mIoU, no better than predicting background "
               f"everywhere ({100 * trivial:.1f} %). Try: {advice}.")
    log.warning(message)
    atomic_write_json(Path(run_dir) / MARKER, {"what": what, "score": score, "trivial": trivial, "message": message})
    return True


def forget(run_dir: str | Path) -> None:
    """A new fit starts: an earlier run's verdict no longer holds."""
    (Path(run_dir) / MARKER).unlink(missing_ok=True)


def verdict(run_dir: str | Path) -> str | None:
    """The warning of the run in `run_dir`, or None when it learned (or was not checked)."""
    path = Path(run_dir) / MARKER
    return json.loads(path.read_text())["message"] if path.is_file() else None
