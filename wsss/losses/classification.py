"""Multi-label classification loss with binary label smoothing
(lucasdavid/PNOC@f250e0d:tools/ai/torch_utils.py, thesis eq. 26)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_labels(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """`y' = (1 − ε)·y + ε/2`: positives move to 1 − ε/2, negatives to ε/2 (toward 0.5)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    return targets * (1.0 - smoothing) + smoothing / 2.0


def multilabel_soft_margin(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0,
                           reduction: str = "mean") -> torch.Tensor:
    """Mean over classes of the binary cross-entropy with logits, then mean over the batch."""
    targets = smooth_labels(targets.float(), smoothing) if smoothing else targets.float()
    per_class = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    per_image = per_class.mean(dim=1)
    if reduction == "none":
        return per_image
    return per_image.mean() if reduction == "mean" else per_image.sum()
