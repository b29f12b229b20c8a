"""The CAM network: backbone features → 1×1 convolution → global average pooling (+ optional bias).

The CAM generators (classifier, Puzzle-CAM, OC-CSE, P-NOC) are bias-free as upstream. The classifier that the
XAI benchmark explains is the thesis's "sigmoid dense layer" `y = σ(GAP(A)·W + b)` (eq. 25, §A.1.2):
`bias=True` adds the per-class b to the logits. b never enters a CAM (it is constant over space).

With Kernel Usage Regularization (thesis eq. 25) the classifier uses the re-parametrised weights
`W_r = α · W ⊙ softmax(W)`, the softmax taken over the class axis of each kernel's weights, so that
a kernel feeds few classes; α = C (KUR-α, §B.1.4) restores the weights' variance when C is large.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbone import Backbone


def kur_alpha(kur: dict | None, num_classes: int) -> float:
    """α of a `stage.kur` setting: a number (1 for KUR), or `num_classes` for KUR-α with α = C (§B.1.4)."""
    alpha = (kur or {}).get("alpha", 1.0)
    return float(num_classes) if alpha == "num_classes" else float(alpha)


class CAMHead(nn.Module):
    """1×1 classifier of the features: raw CAMs from `forward`, the logits' bias (or None) in `bias`."""

    def __init__(self, in_channels: int, num_classes: int, kur: bool = False, kur_alpha: float = 1.0,
                 bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels))
        nn.init.kaiming_normal_(self.weight.view(num_classes, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None
        self.kur = kur
        self.kur_alpha = float(kur_alpha)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def effective_weight(self) -> torch.Tensor:
        """The (C, K) matrix that maps features to class maps (KUR applied when on)."""
        if not self.kur:
            return self.weight
        return self.kur_alpha * self.weight * torch.softmax(self.weight, dim=0)

    def logits(self, cams: torch.Tensor) -> torch.Tensor:
        """GAP of the raw CAMs, plus the bias when the head has one: (B, C)."""
        pooled = gap(cams).float()
        return pooled if self.bias is None else pooled + self.bias.float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps (B, C, h, w), pre-ReLU, without the bias."""
        w = self.effective_weight()
        return F.conv2d(features, w[:, :, None, None].to(features.dtype))


def gap(cams: torch.Tensor) -> torch.Tensor:
    return cams.mean(dim=(2, 3))


class CAMNet(nn.Module):
    """Classifier whose logits are the spatial means of its class activation maps."""

    def __init__(self, backbone: Backbone, num_classes: int, kur: bool = False, kur_alpha: float = 1.0,
                 bias: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = CAMHead(backbone.out_channels, num_classes, kur, kur_alpha, bias)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (logits (B, C), raw CAMs (B, C, h, w))."""
        cams = self.head(self.features(images))
        return self.head.logits(cams), cams

    def new_modules(self) -> list[nn.Module]:
        return [self.head]
