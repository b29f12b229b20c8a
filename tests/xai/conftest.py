"""A tiny random CNN with a GAP + linear head, as the full net (for pytorch-grad-cam) and split."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from wsss.xai.split import SplitModel


class TinyCNN(nn.Module):
    """conv → ReLU → conv → ReLU (explained layer: the last ReLU module) → GAP → linear."""

    def __init__(self, strides: tuple[int, int] = (1, 2), channels: int = 12, num_classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, stride=strides[0]), nn.ReLU(),
            nn.Conv2d(8, channels, 3, padding=1, stride=strides[1]), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    @property
    def target_layer(self) -> nn.Module:
        return self.features[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))

    def split_gap(self) -> SplitModel:
        """Split with the known linear head: closed-form gradients."""
        return SplitModel.from_gap_classifier(self.features, self.fc.weight, self.fc.bias)

    def split_generic(self) -> SplitModel:
        """Split with an opaque head: gradients by autograd through the head."""
        return SplitModel.from_modules(self.features, nn.Sequential(self.pool, self.fc))


def build_tiny(seed: int = 0, strides: tuple[int, int] = (1, 2), num_classes: int = 5,
              dtype: torch.dtype = torch.float32) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(strides, num_classes=num_classes).to(dtype).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def make_tiny():
    """Factory of seeded TinyCNNs in eval mode: make_tiny(seed, strides, num_classes, dtype)."""
    return build_tiny
