"""Confusion matrices on the device (one bincount) and the IoU scores derived from them.

mIoU follows the VOC protocol of the reference evaluation: pixels whose ground truth is 255 are
ignored, IoU_c = TP / (TP + FP + FN), and the mean is taken over all K classes (background
included); a class absent from both prediction and ground truth has an undefined IoU and is left
out of the mean (`nan`-aware), as torchmetrics' JaccardIndex does.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric

IGNORE = 255


def check_range(values: torch.Tensor, num_classes: int, what: str) -> None:
    """Values must be class indices 0..num_classes-1: bincount would count any other value in a wrong cell."""
    if not values.numel():
        return
    low, high = torch.aminmax(values)
    bad = int(low) if int(low) < 0 else int(high) if int(high) >= num_classes else None
    if bad is not None:
        raise ValueError(f"{what} holds the value {bad}, outside the class indices 0..{num_classes - 1} "
                         f"(num_classes={num_classes}; only the ground truth may hold {IGNORE} = ignore)")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE) -> torch.Tensor:
    """(K, K) counts, rows = ground truth, columns = prediction (values checked as in `confusion_matrices`)."""
    valid = target != ignore_index
    t = target[valid].long()
    p = pred[valid].long()
    check_range(t, num_classes, "the ground truth")
    check_range(p, num_classes, "the prediction")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_matrices(preds: torch.Tensor, target: torch.Tensor, num_classes: int,
                       ignore_index: int = IGNORE) -> torch.Tensor:
    """(T, K, K) counts for T candidate predictions (T, ...) of the same target, in one bincount.

    Pixels whose target is `ignore_index` are left out; every other target and every prediction at a
    counted pixel must be a class index, or this raises (naming the value).
    """
    valid = target != ignore_index
    t = target[valid].long()
    p = preds[:, valid].long()
    check_range(t, num_classes, "the ground truth")
    check_range(p, num_classes, "the prediction")
    n = preds.shape[0]
    k2 = num_classes**2
    offset = torch.arange(n, device=preds.device)[:, None] * k2
    idx = offset + t[None] * num_classes + p
    return torch.bincount(idx.reshape(-1), minlength=n * k2).reshape(n, num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU of each class (…, K); nan where the class is in neither prediction nor ground truth."""
    confusion = confusion.double()
    tp = confusion.diagonal(dim1=-2, dim2=-1)
    union = confusion.sum(-1) + confusion.sum(-2) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(confusion: torch.Tensor) -> torch.Tensor:
    return iou_per_class(confusion).nanmean(-1)


class ConfusionMatrixMetric(Metric):
    """Accumulates a (K, K) confusion matrix; sum-reduced across DDP ranks."""

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = IGNORE, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, torch.Tensor]:
        ious = iou_per_class(self.confusion)
        return {"miou": ious.nanmean(), "iou": ious}
