"""Multi-label XAI metrics of the MinMax-CAM benchmark (thesis §A.1.3, eq. 12–16).

For image i, its evaluated label set C_i (detections σ(s) > 0.5 by default, or ground truth),
a label c ∈ C_i with normalised, upsampled map M_ic ∈ [0, 1] and N_i = C_i ∖ {c}:

    Y_i = σ(f(x_i)),  O_ic = σ(f(x_i ⊙ M_ic)),  Ō_ic = σ(f(x_i ⊙ (1 − M_ic)))      (soft masks)
    %IC  = [Y_ic < O_ic,c]                                                             (eq. 12, ↑)
    %AD  = relu(Y_ic − O_ic,c) / Y_ic                                                  (eq. 13, ↓)
    %ADO = 1/max(1, |N_i|) Σ_{n∈N_i} relu(Y_in − O_ic,n) / Y_in                        (eq. 14, ↑)
    %AR  = relu(Y_ic − Ō_ic,c) / Y_ic                                                  (eq. 15, ↑)
    %ARO = 1/max(1, |N_i|) Σ_{n∈N_i} relu(Y_in − Ō_ic,n) / Y_in                        (eq. 16, ↓)

Each is averaged per class over the (i, c) pairs of that class and then over classes (macro,
skipping classes never evaluated); micro averages over all pairs are reported too.
F1+ = harmonic mean of %AR and %ADO (both ↑), F1− = harmonic mean of %AD and %ARO (both ↓),
computed per class and then macro-averaged (as in the paper's notebooks; a zero denominator gives 0).
An image with a single label contributes ADO = ARO = 0 and still counts.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from wsss.xai.methods.base import eval_mode, postprocess

SUMMED = ("ic", "ad", "ado", "ar", "aro")
CLASS_SETS = ("detected", "labels")


def harmonic_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2ab/(a+b), 0 where a + b = 0, NaN where either is NaN."""
    denom = a + b
    return 2 * a * b / torch.where(denom == 0, torch.ones_like(denom), denom)


def labels_to_targets(label_set: torch.Tensor) -> torch.Tensor:
    """(B, C) bool label set -> (B, L) class ids, L = largest set in the batch, -1 padding."""
    label_set = label_set.bool()
    width = int(label_set.sum(dim=1).max()) if label_set.numel() else 0
    # stable sort puts the set's classes first, in increasing class order
    order = torch.sort((~label_set).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    present = label_set.gather(1, order)
    return torch.where(present, order, torch.full_like(order, -1))


def _relative_drop(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """relu(before − after) / before, 0 where before = 0."""
    safe = torch.where(before > 0, before, torch.ones_like(before))
    return torch.where(before > 0, (before - after).clamp(min=0) / safe, torch.zeros_like(before))


class MultiLabelCamMetrics(Metric):
    """%IC, %AD, %ADO, %AR, %ARO, F1+ and F1− over multi-label explanations.

    States are per-class sums reduced by sum, so DDP gathers them exactly.

    Args:
        num_classes: C.
        threshold: detection threshold on σ(s) for class_set="detected".
        class_set: "detected" (paper: labels with σ(s) > threshold) or "labels" (ground truth).
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, num_classes: int, threshold: float = 0.5, class_set: str = "detected", **kwargs):
        super().__init__(**kwargs)
        if class_set not in CLASS_SETS:
            raise ValueError(f"class_set={class_set!r}; expected one of {CLASS_SETS}")
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be >= 1")
        self.num_classes = num_classes
        self.threshold = threshold
        self.class_set = class_set
        for name in ("count", "count_retention", *SUMMED):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def _apply(self, fn, exclude_state=""):
        # `module.to(torch.bfloat16)` (Lightning's bf16-true) reaches the states; sums over thousands of
        # image-label pairs need float64 whatever the network's precision
        this = super()._apply(fn, exclude_state)
        for name in self._defaults:
            this._defaults[name] = this._defaults[name].double()
            setattr(this, name, getattr(this, name).double())
        return this

    def select_targets(self, probs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The evaluated labels C_i of each image as (B, L) class ids (-1 padding).

        probs: (B, C) σ(f(x)); labels: (B, C) multi-hot ground truth (needed for class_set="labels").
        """
        if self.class_set == "labels":
            if labels is None:
                raise ValueError("class_set='labels' needs the ground-truth labels (B, C)")
            return labels_to_targets(labels > 0)
        return labels_to_targets(probs > self.threshold)

    def update(self, probs: torch.Tensor, targets: torch.Tensor, masked_probs: torch.Tensor,
               antimasked_probs: torch.Tensor | None = None) -> None:
        """Accumulate one batch.

        Args:
            probs: Y (B, C), σ of the original images' logits.
            targets: (B, L) class ids of the evaluated labels C_i (-1 padding); see select_targets.
            masked_probs: O (B, L, C), σ(f(x_i ⊙ M_il)) for target l.
            antimasked_probs: Ō (B, L, C), σ(f(x_i ⊙ (1 − M_il))); None skips %AR and %ARO.
        """
        b, c = probs.shape
        if targets.dim() != 2 or targets.shape[0] != b:
            raise ValueError(f"targets have shape {tuple(targets.shape)}; expected (B={b}, L)")
        expected = (b, targets.shape[1], c)
        for name, value in (("masked_probs", masked_probs), ("antimasked_probs", antimasked_probs)):
            if value is not None and tuple(value.shape) != expected:
                raise ValueError(f"{name} has shape {tuple(value.shape)}; expected (B, L, C) = {expected}")
        probs = probs.double()
        valid = targets >= 0
        own = F.one_hot(targets.clamp(min=0), c).double() * valid[..., None]  # (B, L, C)
        label_set = own.sum(dim=1).clamp(max=1)  # (B, C)
        others = label_set[:, None, :] * (1 - own)  # N_i per (i, l)
        n_others = others.sum(dim=2).clamp(min=1)
        y = probs[:, None, :].expand_as(own)
        cls = targets[valid]

        def own_and_others(after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            drop = _relative_drop(y, after.double())
            return (drop * own).sum(dim=2), (drop * others).sum(dim=2) / n_others

        ad, ado = own_and_others(masked_probs)
        ic = (y < masked_probs.double()).double().mul(own).sum(dim=2)
        for name, value in (("ic", ic), ("ad", ad), ("ado", ado)):
            getattr(self, name).index_add_(0, cls, value[valid])
        self.count.index_add_(0, cls, torch.ones_like(cls, dtype=torch.float64))
        if antimasked_probs is not None:
            ar, aro = own_and_others(antimasked_probs)
            self.ar.index_add_(0, cls, ar[valid])
            self.aro.index_add_(0, cls, aro[valid])
            self.count_retention.index_add_(0, cls, torch.ones_like(cls, dtype=torch.float64))

    def compute(self) -> dict[str, torch.Tensor]:
        """Percentages. Keys: ic, ad, ado, ar, aro, f1_pos, f1_neg (macro, the paper's numbers),
        each also as `<key>_micro` and `<key>_per_class` (NaN for classes never evaluated),
        `f1_pos_of_macros`/`f1_neg_of_macros` (harmonic means of the macros: not the paper's
        convention, reported for comparison) and `count` (evaluated pairs per class)."""
        out: dict[str, torch.Tensor] = {}
        per_class, micro = {}, {}
        for name in SUMMED:
            count = self.count_retention if name in ("ar", "aro") else self.count
            total = getattr(self, name)
            per_class[name] = 100 * total / count  # 0/0 -> NaN
            micro[name] = 100 * total.sum() / count.sum()
        per_class["f1_pos"] = harmonic_mean(per_class["ar"], per_class["ado"])
        per_class["f1_neg"] = harmonic_mean(per_class["ad"], per_class["aro"])
        micro["f1_pos"] = harmonic_mean(micro["ar"], micro["ado"])
        micro["f1_neg"] = harmonic_mean(micro["ad"], micro["aro"])
        for name, values in per_class.items():
            out[name] = values.nanmean().float()
            out[f"{name}_micro"] = micro[name].float()
            out[f"{name}_per_class"] = values.float()
        out["f1_pos_of_macros"] = harmonic_mean(out["ar"], out["ado"])
        out["f1_neg_of_macros"] = harmonic_mean(out["ad"], out["aro"])
        out["count"] = self.count.float()
        return out


def _logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    out = model(images)
    return out[0] if isinstance(out, (tuple, list)) else out  # CAMNet returns (logits, cams)


@torch.no_grad()
def masked_probabilities(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                         maps: torch.Tensor, targets: torch.Tensor, retention: bool = True,
                         normalize: bool = True, align_corners: bool = False, batch_size: int = 64
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """σ(f(x ⊙ M)) and σ(f(x ⊙ (1 − M))) for every valid (image, target) pair, chunked.

    Args:
        model: images -> logits (a SplitModel, or a net returning (logits, ...)).
        images: (B, 3, H, W) preprocessed inputs (the mask multiplies this tensor, as in the paper).
        maps: (B, L, h, w) maps of `targets`; with normalize=True they get ReLU + min-max at their
            own resolution before the bilinear resize to (H, W) (paper order), else used as given.
        targets: (B, L) class ids, -1 padding (those rows come back as zeros).
        retention: also run the complement masks (for %AR, %ARO).

    Returns:
        (masked (B, L, C), antimasked (B, L, C) or None), float32.
    """
    if maps.shape[:2] != targets.shape:
        raise ValueError(f"maps have shape {tuple(maps.shape)} but targets {tuple(targets.shape)}; "
                         "expected maps (B, L, h, w) for targets (B, L)")
    size = tuple(images.shape[-2:])
    masks = postprocess(maps.float(), size, relu=normalize, normalize="minmax" if normalize else "none",
                        align_corners=align_corners)
    b_idx, l_idx = (targets >= 0).nonzero(as_tuple=True)
    masked = antimasked = None
    for start in range(0, b_idx.numel(), batch_size):
        bs, ls = b_idx[start:start + batch_size], l_idx[start:start + batch_size]
        m = masks[bs, ls][:, None].to(images.dtype)
        x = images[bs]
        p = torch.sigmoid(_logits(model, x * m).float())
        if masked is None:
            masked = p.new_zeros(*targets.shape, p.shape[1])
            antimasked = p.new_zeros(*targets.shape, p.shape[1]) if retention else None
        masked[bs, ls] = p
        if retention:
            antimasked[bs, ls] = torch.sigmoid(_logits(model, x * (1 - m)).float())
    return masked, antimasked


@torch.no_grad()
def update_cam_metrics(metric: MultiLabelCamMetrics, model: nn.Module, images: torch.Tensor,
                       maps: torch.Tensor, targets: torch.Tensor, probs: torch.Tensor | None = None,
                       retention: bool = True, batch_size: int = 64, align_corners: bool = False) -> None:
    """Run the masked forwards of a batch of explanations and update `metric`.

    Typical use: `probs = σ(model(x))`, `targets = metric.select_targets(probs, labels)`,
    `maps = method(model, x, targets)`, then `update_cam_metrics(metric, model, x, maps, targets, probs)`.
    """
    with eval_mode(model):
        if probs is None:
            probs = torch.sigmoid(_logits(model, images).float())
        masked, antimasked = masked_probabilities(model, images, maps, targets, retention,
                                                  align_corners=align_corners, batch_size=batch_size)
    if masked is None:  # no evaluated label in the batch
        return
    metric.update(probs, targets.to(probs.device), masked, antimasked)
