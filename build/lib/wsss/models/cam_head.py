"""The CAM network: backbone features → bias-free 1×1 convolution → global average pooling.

With Kernel Usage Regularization (thesis eq. 25) the classifier uses the re-parametrised weights
`W_r = α · W ⊙ softmax(W)`, the softmax taken over the class axis of each kernel's weights, so that
a kernel feeds few classes; α = C (KUR-α, §B.1.4) restores the weights' variance when C is large.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbone import Backbone


class CAMHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, kur: bool = False, kur_alpha: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels))
        nn.init.kaiming_normal_(self.weight.view(num_classes, in_channels, 1, 1))
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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps (B, C, h, w), pre-ReLU."""
        w = self.effective_weight()
        return F.conv2d(features, w[:, :, None, None].to(features.dtype))


def gap(cams: torch.Tensor) -> torch.Tensor:
    return cams.mean(dim=(2, 3))


class CAMNet(nn.Module):
    """Classifier whose logits are the spatial means of its class activation maps."""

    def __init__(self, backbone: Backbone, num_classes: int, kur: bool = False, kur_alpha: float = 1.0):
        super().__init__()
        self.backbone = backbone
        self.head = CAMHead(backbone.out_channels, num_classes, kur, kur_alpha)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (logits (B, C), raw CAMs (B, C, h, w))."""
        cams = self.head(self.features(images))
        return gap(cams).float(), cams

    def new_modules(self) -> list[nn.Module]:
        return [self.head]
