"""C²AM / C²AM-H network: a disentangler head that splits each image into two partitions.

Thesis §3.2 (Eq. 7) and §B.2.2 (Eq. 29); lucasdavid/PNOC@f250e0d:core/networks.py,
CVI-SZU/CCAM@e6a46c9:WSSS/core/model.py.

* Features X: the last two backbone stages concatenated (layer4 ⊕ layer3, 2048 + 1024 = 3072 channels
  on ResNet-50-like nets). At output stride 16 both have stride 16 and no resizing happens (the
  reference); at other strides every selected stage is bilinearly resized to the finest of them.
* Disentangler: 3×3 conv (C → 1, no bias) → BatchNorm(1) ⇒ logit map S (B×1×h×w); P = σ(S) is the
  probability of each position belonging to the first partition (the foreground once oriented).
* Pooled vectors (the reference's pooling, not a normalised weighted average):
  v_f = Σ_hw P·X / (h·w) and v_b = Σ_hw (1 − P)·X / (h·w), so v_f + v_b = mean_hw X.

Polarity: the loss of Eq. 7 is symmetric under fg ↔ bg, so plain C²AM may learn S with high values on
the background. `foreground_is_flipped` decides it (see its docstring); C²AM-H's hint loss pins S to
the foreground, so its polarity is known by construction.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbone import Backbone

POLARITY_RULES = ("border", "hints")


class CCAMOutput(NamedTuple):
    logits: torch.Tensor  # S, (B, 1, h, w): disentangler logits (BN output)
    fg: torch.Tensor  # v_f, (B, C): features pooled with P
    bg: torch.Tensor  # v_b, (B, C): features pooled with 1 − P


def concat_stages(features: Sequence[torch.Tensor], stages: Sequence[int]) -> torch.Tensor:
    """Concatenate the selected stage maps along channels, resized (bilinear) to the finest of them."""
    maps = [features[i] for i in stages]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps]
    return torch.cat(maps, dim=1)


def partition_pool(features: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(v_f, v_b) = (mean_hw P·X, mean_hw (1 − P)·X) for X (B, C, h, w) and P (B, 1, h, w)."""
    if probs.shape[0] != features.shape[0] or probs.shape[1] != 1 or probs.shape[-2:] != features.shape[-2:]:
        raise ValueError(f"probs of shape {tuple(probs.shape)} do not match features of shape "
                         f"{tuple(features.shape)}; expected (B, 1, h, w)")
    fg = (probs * features).mean(dim=(2, 3))
    bg = ((1 - probs) * features).mean(dim=(2, 3))
    return fg, bg


class Disentangler(nn.Module):
    """3×3 conv (C → 1, bias-free, kaiming init) → BatchNorm(1): the logit map S."""

    def __init__(self, in_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(1)
        nn.init.kaiming_normal_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class CCAM(nn.Module):
    """C²AM network: backbone → concatenated stages → disentangler → (S, v_f, v_b).

    Args:
        backbone: a `Backbone` (the reference uses output stride 16).
        stages: indices of the backbone stages concatenated as X (default the last two: layer3, layer4).
        kernel_size: disentangler conv kernel (3).

    The buffer `flipped` (saved in checkpoints) records the polarity decided for plain C²AM; use
    `foreground_logits` to get logits whose high values mean foreground.
    """

    def __init__(self, backbone: Backbone, stages: Sequence[int] = (-2, -1), kernel_size: int = 3):
        super().__init__()
        n = len(backbone.channels)
        if not stages or any(not -n <= s < n for s in stages):
            raise ValueError(f"stages={tuple(stages)} must be non-empty stage indices of a "
                             f"{n}-stage backbone")
        self.backbone = backbone
        self.stages = tuple(stages)
        self.feature_channels = sum(backbone.channels[s] for s in self.stages)
        self.disentangler = Disentangler(self.feature_channels, kernel_size)
        self.register_buffer("flipped", torch.tensor(False))

    def new_modules(self) -> list[nn.Module]:
        """Modules trained from scratch (the disentangler): the 10×/20× learning-rate groups."""
        return [self.disentangler]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """X (B, C, h, w): the selected stages concatenated."""
        return concat_stages(self.backbone(x), self.stages)

    def forward(self, x: torch.Tensor) -> CCAMOutput:
        features = self.features(x)
        logits = self.disentangler(features)
        fg, bg = partition_pool(features, torch.sigmoid(logits))
        return CCAMOutput(logits, fg, bg)

    def foreground_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits oriented so that high = foreground: −S when `flipped` (σ(−S) = 1 − σ(S)), else S.

        Upstream C²AM inference uses 1 − S instead of −S; with ReLU afterwards the two differ.
        """
        return torch.where(self.flipped, -logits, logits)


def border_mean(probs: torch.Tensor, width: int = 4) -> torch.Tensor:
    """Mean of the four `width`-pixel border strips (top, bottom, left, right), each averaged over the
    batch, then the four means averaged (the reference computes it this way; corners count twice)."""
    if probs.ndim != 4 or probs.shape[1] != 1:
        raise ValueError(f"probs must have shape (B, 1, h, w); got {tuple(probs.shape)}")
    if width < 1 or 2 * width > min(probs.shape[-2:]):
        raise ValueError(f"border width={width} does not fit a map of size {tuple(probs.shape[-2:])}")
    strips = (probs[..., :width, :], probs[..., -width:, :], probs[..., :, :width], probs[..., :, -width:])
    return torch.stack([s.mean() for s in strips]).mean()


@torch.no_grad()
def foreground_is_flipped(probs: torch.Tensor, rule: str = "border", hints: torch.Tensor | None = None,
                          delta_fg: float = 0.4, border_width: int = 4) -> bool:
    """Whether the map P = σ(S) highlights the background (so the foreground is 1 − P).

    Rules:
        "border": the reference rule (CCAM `train_CCAM_VOC12.py`): objects seldom touch the image
            border, so the map is flipped when the mean of P over the `border_width`-pixel border
            strips is > 0.5 (strict; see `border_mean`).
        "hints": with CAM hints (B, 1, h, w) at the map's size, e.g. from `wsss.losses.ccam.hint_map`:
            the foreground is the partition that overlaps the hinted positions (hint > delta_fg) more,
            i.e. flipped when mean P over those positions < 0.5 (strict, so a tie keeps P).

    Decide once, on a batch of training images, and store the answer (e.g. in `CCAM.flipped`).
    """
    if rule == "border":
        return bool(border_mean(probs, border_width) > 0.5)
    if rule == "hints":
        if hints is None:
            raise ValueError("foreground_is_flipped(rule='hints') needs `hints`")
        if hints.shape != probs.shape:
            raise ValueError(f"hints of shape {tuple(hints.shape)} must match probs of shape "
                             f"{tuple(probs.shape)}")
        hinted = hints > delta_fg
        if not hinted.any():
            raise ValueError(f"no hint value is above delta_fg={delta_fg}: the 'hints' rule cannot decide")
        return bool(probs[hinted].mean() < 0.5)
    raise ValueError(f"rule={rule!r} is not a polarity rule; expected one of {POLARITY_RULES}")
