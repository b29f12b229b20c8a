"""PoolNet-style salient object detector (edge-free) and its loss
(lucasdavid/PNOC@f250e0d:poolnet/networks/poolnet.py).

Trained on the binarised C²AM-H saliency; its maps define the background of the affinity labels.
Structure (PoolNet, Liu et al. 2019, without the edge branch):

* Lateral 1×1 convs + ReLU project every backbone stage (shallow → deep) to `level_channels`.
* Global guidance module (GGM): a pyramid pooling module on the deepest level (identity + adaptive
  average pools to 1, 3, 5 cells, each 3×3 conv + ReLU, upsampled, concatenated, 3×3 conv + ReLU),
  whose output is upsampled to every shallower level and adapted there by a 3×3 conv + ReLU.
* Top-down decoder of feature aggregation modules (FAM): x + Σ_k up(conv3×3(avgpool_k(x))) for
  k = 2, 4, 8, ReLU, upsample to the next level, 3×3 conv; fused with that level's lateral features and
  its guidance (sum, 3×3 conv). A last FAM at the shallowest level, then a 1×1 score conv.
* Output: one saliency logit per pixel, bilinearly upsampled (align_corners=True) to the input size.

The reference trains with the whole model in eval mode (frozen BatchNorm statistics); the head has no
normalisation layers, so `frozen_bn=True` keeps the backbone's BatchNorms in eval mode under train().

Switches toward the thesis code's PoolNet (lucasdavid/PNOC@f250e0d poolnet/networks, ResNet-50):
`stem_level` adds the stride-2 stem (before its max-pool) as the shallowest level, so the last FAM runs at
stride 2 (upstream widths then (128, 256, 256, 512, 512)); `ppm="poolnet"` feeds the PPM a 1×1 projection
of the raw deepest features without ReLU and uses 1×1 branch convs (ours: 3×3 on the ReLU'd lateral);
`bn_affine_trainable=False` also freezes the backbone BatchNorms' γ, β (upstream `requires_grad=False`);
`init="normal"` draws every head convolution from N(0, 0.01) (upstream `weights_init`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbone import Backbone
from wsss.models.stem_tap import StemTap

PPM_STYLES = ("ours", "poolnet")
INITS = ("default", "normal")


def conv3x3_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.ReLU(inplace=True))


def upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def default_level_channels(channels: Sequence[int]) -> tuple[int, ...]:
    """Half of each stage's channels, within [128, 512] (ResNet-50: 128, 256, 512, 512)."""
    return tuple(min(512, max(128, c // 2)) for c in channels)


class PyramidPooling(nn.Module):
    """PPM: identity + adaptive average pools to `bins` cells (a conv + ReLU each: 3×3, or 1×1 as the thesis
    code with `branch_kernel=1`), concat, 3×3 conv + ReLU."""

    def __init__(self, channels: int, bins: Sequence[int] = (1, 3, 5), branch_kernel: int = 3):
        super().__init__()
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, branch_kernel, padding=branch_kernel // 2, bias=False),
                          nn.ReLU(inplace=True)) for _ in self.bins)
        self.merge = conv3x3_relu(channels * (len(self.bins) + 1), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [upsample(branch(F.adaptive_avg_pool2d(x, b)), size)
                  for b, branch in zip(self.bins, self.branches)]
        return self.merge(torch.cat([x, *pooled], dim=1))


class FeatureAggregation(nn.Module):
    """FAM: x + Σ_k up(conv3×3(avgpool_k(x))), ReLU, (upsample to `size`), 3×3 conv to `out_ch`.

    A pooling kernel larger than the map is clipped to the map size (tiny inputs).
    """

    def __init__(self, in_ch: int, out_ch: int, pool_sizes: Sequence[int] = (2, 4, 8)):
        super().__init__()
        self.pool_sizes = tuple(pool_sizes)
        self.convs = nn.ModuleList(nn.Conv2d(in_ch, in_ch, 3, padding=1, bias=False) for _ in self.pool_sizes)
        self.out = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        total = x
        for k, conv in zip(self.pool_sizes, self.convs):
            kernel = (min(k, h), min(k, w))
            total = total + upsample(conv(F.avg_pool2d(x, kernel, kernel)), (h, w))
        total = F.relu(total)
        if size is not None:
            total = upsample(total, size)
        return self.out(total)


class PoolNet(nn.Module):
    """Edge-free PoolNet on a `Backbone`: (B, 3, H, W) → saliency logits (B, 1, H, W).

    Args:
        backbone: a `Backbone` (the reference: ResNet-50 at output stride 16).
        level_channels: channels of each level after the lateral projection, shallow → deep
            (default `default_level_channels(backbone.channels)`).
        ppm_bins: PPM adaptive pooling sizes (1, 3, 5).
        pool_sizes: FAM average-pooling kernels (2, 4, 8).
        frozen_bn: keep the backbone's BatchNorm layers in eval mode during training (reference).
        stem_level: the stride-2 stem as the shallowest level (thesis code); needs a ResNet-style stem.
        ppm: "ours" (PPM on the ReLU'd deepest lateral, 3×3 branches) or "poolnet" (thesis code).
        bn_affine_trainable: False freezes the backbone BatchNorms' affine parameters too (thesis code).
        init: "default" (PyTorch) or "normal" (head convolutions from N(0, 0.01), biases 0; thesis code).
    """

    def __init__(self, backbone: Backbone, level_channels: Sequence[int] | None = None,
                 ppm_bins: Sequence[int] = (1, 3, 5), pool_sizes: Sequence[int] = (2, 4, 8),
                 frozen_bn: bool = True, stem_level: bool = False, ppm: str = "ours",
                 bn_affine_trainable: bool = True, init: str = "default"):
        super().__init__()
        if ppm not in PPM_STYLES or init not in INITS:
            raise ValueError(f"PoolNet: ppm={ppm!r}, init={init!r}; expected ppm in {PPM_STYLES}, init in {INITS}")
        self.stem = StemTap(backbone, "act1", "stage.stem_level") if stem_level else None
        channels = ([self.stem.channels] if self.stem else []) + list(backbone.channels)
        n = len(channels)
        level_channels = tuple(level_channels or default_level_channels(channels))
        if len(level_channels) != n or n < 2:
            raise ValueError(f"level_channels={level_channels} must have one entry per level ({n} levels: "
                             f"the backbone stages{' and the stem' if self.stem else ''}, at least 2)")
        self.backbone = backbone
        self.frozen_bn = frozen_bn
        if not bn_affine_trainable:
            for m in backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.requires_grad_(False)
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, lc, 1, bias=False), nn.ReLU(inplace=True))
            for c, lc in zip(channels, level_channels))
        self.ppm_projection = (nn.Conv2d(channels[-1], level_channels[-1], 1, bias=False)
                               if ppm == "poolnet" else None)
        self.ppm = PyramidPooling(level_channels[-1], ppm_bins, 1 if ppm == "poolnet" else 3)
        self.guides = nn.ModuleList(conv3x3_relu(level_channels[-1], lc) for lc in level_channels[:-1])
        # decoder step i (deep → shallow) maps level i+1's channels to level i's, then fuses.
        self.fams = nn.ModuleList(FeatureAggregation(level_channels[i + 1], level_channels[i], pool_sizes)
                                  for i in range(n - 1))
        self.fuses = nn.ModuleList(nn.Conv2d(lc, lc, 3, padding=1, bias=False) for lc in level_channels[:-1])
        self.last_fam = FeatureAggregation(level_channels[0], level_channels[0], pool_sizes)
        self.score = nn.Conv2d(level_channels[0], 1, 1)
        if init == "normal":
            for m in self.new_modules():
                for conv in m.modules():
                    if isinstance(conv, nn.Conv2d):
                        nn.init.normal_(conv.weight, 0.0, 0.01)
                        if conv.bias is not None:
                            nn.init.zeros_(conv.bias)
        self.train()  # Lightning's fit never calls train(): the frozen BatchNorms are in eval mode from here

    def new_modules(self) -> list[nn.Module]:
        """Everything but the backbone."""
        return [m for name, m in self.named_children() if name != "backbone" and m is not None]

    def train(self, mode: bool = True) -> "PoolNet":
        super().train(mode)
        if mode and self.frozen_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = list(self.backbone(x))
        if self.stem is not None:
            features.insert(0, self.stem.take(self.backbone))
        levels = [lateral(f) for lateral, f in zip(self.laterals, features)]
        deepest = levels[-1] if self.ppm_projection is None else self.ppm_projection(features[-1])
        guidance = self.ppm(deepest)
        y = levels[-1]
        for i in reversed(range(len(levels) - 1)):
            size = levels[i].shape[-2:]
            guide = self.guides[i](upsample(guidance, size))
            y = self.fuses[i](self.fams[i](y, size) + levels[i] + guide)
        y = self.score(self.last_fam(y))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


def saliency_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                  reduction: str = "mean") -> torch.Tensor:
    """BCE with logits on a 0/1 saliency target, positions equal to `ignore_index` ignored.

    logits (B, 1, H, W) or (B, H, W); target of the same spatial shape with values in {0, 1, ignore}.
    reduction: "mean" over valid pixels (0 when none) or "sum" (the reference sums, then divides by
    iter_size·batch).
    """
    if logits.ndim == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if logits.shape != target.shape:
        raise ValueError(f"saliency target of shape {tuple(target.shape)} does not match logits "
                         f"{tuple(logits.shape)}")
    valid = target != ignore_index
    bad = valid & (target != 0) & (target != 1)
    if bad.any():
        raise ValueError(f"saliency target values must be 0, 1 or {ignore_index}; "
                         f"found {target[bad].unique()[:5].tolist()}")
    bce = F.binary_cross_entropy_with_logits(logits, torch.where(valid, target, 0).to(logits.dtype),
                                             reduction="none") * valid
    if reduction == "sum":
        return bce.sum()
    if reduction == "mean":
        return bce.sum() / valid.sum().clamp(min=1)
    raise ValueError(f"reduction={reduction!r} is not supported; expected 'mean' or 'sum'")
