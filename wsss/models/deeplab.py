"""DeepLabV3+ segmentation network on a multi-stage `Backbone` (stage 4 of the pipeline).

Architecture (lucasdavid/PNOC@f250e0d:core/deeplab_utils.py, Puzzle-CAM / P-NOC flavour):

* ASPP on the deepest stage: a 1×1 branch, three 3×3 atrous branches (rates 6/12/18 at output
  stride 16, doubled at 8) and an image-pooling branch (GAP → 1×1 → norm → ReLU → upsample); every
  branch has 256 channels + norm + ReLU; concat → 1×1 projection + norm + ReLU + Dropout(0.5).
* Decoder: the low-level stage (stride 4, layer1) projected to 48 channels (1×1 + norm + ReLU); the
  ASPP output bilinearly upsampled to its size; concat → 3×3 conv + norm + ReLU + Dropout(0.5) →
  3×3 conv + norm + ReLU + Dropout(0.1) → 1×1 classifier (with bias).
* Logits bilinearly upsampled to the input size.

`norm="gn"` uses GroupNorm(4 groups) (the P-NOC runner, works with batch 1 in training mode);
`norm="bn"` uses BatchNorm2d. Head convolutions are kaiming-normal initialised.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbone import Backbone

NORMS = ("gn", "bn")
REFERENCE_STRIDE = 16  # the output stride at which `aspp_rates` are given


def make_norm(norm: str, channels: int, groups: int = 4) -> nn.Module:
    """GroupNorm(`groups`) for "gn", BatchNorm2d for "bn"."""
    if norm == "gn":
        return nn.GroupNorm(groups, channels)
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm={norm!r} is not supported; expected one of {NORMS}")


def conv_norm_relu(in_ch: int, out_ch: int, kernel: int, norm: str, dilation: int = 1,
                   groups: int = 4) -> nn.Sequential:
    """Bias-free conv (same padding) → norm → ReLU."""
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False),
        make_norm(norm, out_ch, groups),
        nn.ReLU(inplace=True),
    )


def scaled_aspp_rates(rates: Sequence[int], output_stride: int) -> tuple[int, ...]:
    """Atrous rates at `output_stride`, given the rates at output stride 16 (×2 at OS8, ½ at OS32)."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride={output_stride} is not supported; expected 8, 16 or 32")
    scaled = [r * REFERENCE_STRIDE / output_stride for r in rates]
    if any(s != int(s) or s < 1 for s in scaled):
        raise ValueError(f"aspp_rates={tuple(rates)} cannot be scaled to output_stride={output_stride} "
                         "(rates must stay positive integers)")
    return tuple(int(s) for s in scaled)


class ImagePooling(nn.Module):
    """ASPP image-level branch: global average → 1×1 conv → norm → ReLU → upsample."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, groups: int = 4, align_corners: bool = True):
        super().__init__()
        self.project = conv_norm_relu(in_ch, out_ch, 1, norm, groups=groups)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(F.adaptive_avg_pool2d(x, 1))
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, one 3×3 branch per rate, image pooling; 1×1 projection."""

    def __init__(self, in_ch: int, rates: Sequence[int], out_ch: int = 256, norm: str = "gn",
                 groups: int = 4, dropout: float = 0.5, align_corners: bool = True):
        super().__init__()
        branches = [conv_norm_relu(in_ch, out_ch, 1, norm, groups=groups)]
        branches += [conv_norm_relu(in_ch, out_ch, 3, norm, dilation=r, groups=groups) for r in rates]
        branches.append(ImagePooling(in_ch, out_ch, norm, groups, align_corners))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(conv_norm_relu(out_ch * len(branches), out_ch, 1, norm, groups=groups),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class Decoder(nn.Module):
    """DeepLabV3+ decoder: low-level projection, fusion with the upsampled ASPP output, classifier."""

    def __init__(self, low_level_in: int, aspp_ch: int, num_classes: int, low_level_channels: int = 48,
                 channels: int = 256, norm: str = "gn", groups: int = 4,
                 dropouts: Sequence[float] = (0.5, 0.1), align_corners: bool = True):
        super().__init__()
        if len(dropouts) != 2:
            raise ValueError(f"decoder dropouts={tuple(dropouts)} must have 2 values (one per 3×3 conv)")
        self.low_level = conv_norm_relu(low_level_in, low_level_channels, 1, norm, groups=groups)
        self.fuse = nn.Sequential(
            conv_norm_relu(low_level_channels + aspp_ch, channels, 3, norm, groups=groups),
            nn.Dropout(dropouts[0]),
            conv_norm_relu(channels, channels, 3, norm, groups=groups),
            nn.Dropout(dropouts[1]),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.align_corners = align_corners

    def forward(self, aspp_out: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low = self.low_level(low_level)
        up = F.interpolate(aspp_out, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.classifier(self.fuse(torch.cat([up, low], dim=1)))


def init_head(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit/zero norms, zero conv biases (Puzzle-CAM/P-NOC init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ on a `Backbone` built by the caller with the same `output_stride`.

    Args:
        backbone: `Backbone(name, pretrained, output_stride=output_stride)`.
        num_classes: K, including background.
        output_stride: stride of the backbone's deepest stage (8, 16 or 32); checked against the backbone.
        aspp_rates: atrous rates at output stride 16 (6, 12, 18); scaled to `output_stride`
            (stored, scaled, in `self.aspp_rates`).
        norm: "gn" (GroupNorm, `gn_groups` groups) or "bn" (BatchNorm2d) in ASPP and decoder.
        low_level_channels: channels of the projected low-level features (48).
        decoder_channels: channels of ASPP branches and decoder convs (256).
        aspp_dropout: dropout after the ASPP projection (0.5).
        decoder_dropouts: dropouts after the two 3×3 decoder convs (0.5, 0.1).
        low_level_stage: index of the backbone stage used as low-level features (0 = stride 4, layer1).
        align_corners: bilinear upsampling convention (True upstream).
        gn_groups: GroupNorm groups (4).
    """

    def __init__(self, backbone: Backbone, num_classes: int, output_stride: int = 16,
                 aspp_rates: Sequence[int] = (6, 12, 18), norm: str = "gn", low_level_channels: int = 48,
                 decoder_channels: int = 256, aspp_dropout: float = 0.5,
                 decoder_dropouts: Sequence[float] = (0.5, 0.1), low_level_stage: int = 0,
                 align_corners: bool = True, gn_groups: int = 4):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be positive")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not supported; expected one of {NORMS}")
        if backbone.stride != output_stride:
            raise ValueError(f"output_stride={output_stride} but the backbone's deepest stage has stride "
                             f"{backbone.stride}; build it with Backbone(..., output_stride={output_stride})")
        if not -len(backbone.channels) <= low_level_stage < len(backbone.channels) - 1:
            raise ValueError(f"low_level_stage={low_level_stage} is not a stage above the deepest one "
                             f"(backbone has {len(backbone.channels)} stages)")
        self.backbone = backbone
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.aspp_rates = scaled_aspp_rates(aspp_rates, output_stride)
        self.low_level_stage = low_level_stage
        self.align_corners = align_corners
        self.aspp = ASPP(backbone.out_channels, self.aspp_rates, decoder_channels, norm, gn_groups,
                         aspp_dropout, align_corners)
        self.decoder = Decoder(backbone.channels[low_level_stage], decoder_channels, num_classes,
                               low_level_channels, decoder_channels, norm, gn_groups, decoder_dropouts,
                               align_corners)
        init_head(self.aspp)
        init_head(self.decoder)

    def new_modules(self) -> list[nn.Module]:
        """Modules trained from scratch (ASPP + decoder): the 10×/20× learning-rate groups."""
        return [self.aspp, self.decoder]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the low-level stage's resolution (stride 4), before the final upsampling."""
        features = self.backbone(x)
        return self.decoder(self.aspp(features[-1]), features[self.low_level_stage])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K, H, W) at the input size."""
        logits = self.forward_features(x)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)
