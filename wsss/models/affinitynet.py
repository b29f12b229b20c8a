"""AffinityNet as the IRN boundary branch (the variant P-NOC and Puzzle-CAM use;
lucasdavid/PNOC@f250e0d:core/networks.py, jiwoon-ahn/irn@a2ece00:net/resnet50_irn.py).

Five feature maps — the stem after its max-pool (stride 4; 64 channels for ResNet, 128 for ResNeSt-269's
deep stem) and the four backbone stages — each go through `1×1 conv (→32, no bias) → GroupNorm(4) →
resize to the stride-4 grid → ReLU`; the projections are concatenated (5 × 32 = 160 channels) and a
`1×1 conv (160→1, bias)` gives the boundary logit at stride 4, as IRN and the thesis code
(lucasdavid/PNOC@f250e0d:core/networks.py `AffinityNet`: fc_edge1..5, fc_edge6 160→1). The affinity of a pixel
pair is `1 − max σ(edge)` along the path between them (`wsss.ops.pairs.affinity_from_boundary`), so
AffinityNet has no affinity head of its own.

The shared `Backbone` returns the stages timm reports (for ResNets: layer1..layer4); the stem branch
reads the output of the backbone's `maxpool` through a forward hook (`stem_branch=False` drops it: four
branches, 128→1). Stages finer than stride 4 are max-pooled (3×3, stride 2, like the ResNet stem) to
stride 4; coarser ones are bilinearly upsampled and cropped to the stride-4 grid, as IRN does.
The boundary probabilities σ(edge) are computed in float32 even under bf16/fp16 autocast: the affinity
1 − max σ is close to 1 for every negative pair the loss pushes down, where bf16 cannot resolve it
(0.999 rounds to 1.0 and −log(1 + ε − a) saturates).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbone import Backbone
from wsss.models.stem_tap import StemTap
from wsss.ops.pairs import PairIndex, affinity_from_boundary

EDGE_STRIDE = 4


class StageProjection(nn.Module):
    """1×1 conv + GroupNorm of one stage; resize to the stride-4 grid and ReLU happen in `forward`."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, reduction: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.GroupNorm(groups, out_channels)
        self.reduction = reduction

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.reduction < EDGE_STRIDE:
            x = pool_to_stride4(x, self.reduction)
        x = self.norm(self.conv(x))
        if self.reduction > EDGE_STRIDE:
            x = F.interpolate(x, scale_factor=self.reduction // EDGE_STRIDE, mode="bilinear", align_corners=False)
        if x.shape[-2] < size[0] or x.shape[-1] < size[1]:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return torch.relu(x[..., :size[0], :size[1]])


def pool_to_stride4(x: torch.Tensor, reduction: int) -> torch.Tensor:
    while reduction < EDGE_STRIDE:
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        reduction *= 2
    return x


class AffinityNet(nn.Module):
    """Boundary network on a (by default frozen) backbone.

    Args:
        backbone: the feature pyramid; every stage it returns feeds one projection.
        branch_channels: channels of each stage projection (32 in IRN).
        gn_groups: GroupNorm groups of the projections (4 in IRN).
        freeze_backbone: detach the features and keep the backbone in eval mode (IRN / P-NOC `mode=fix`).
        stem_branch: also project the stem after its max-pool (IRN / P-NOC: 5 branches); needs a backbone
            with a ResNet-style `maxpool` module.
    """

    def __init__(self, backbone: Backbone, branch_channels: int = 32, gn_groups: int = 4,
                 freeze_backbone: bool = True, stem_branch: bool = True):
        super().__init__()
        if EDGE_STRIDE not in backbone.reductions:
            raise ValueError(f"backbone {backbone.name!r} has stage reductions {backbone.reductions}; AffinityNet "
                             f"needs a stride-{EDGE_STRIDE} stage")
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        self.reference_stage = backbone.reductions.index(EDGE_STRIDE)
        channels, reductions = list(backbone.channels), list(backbone.reductions)
        self.stem = StemTap(backbone, "maxpool", "stage.stem_branch") if stem_branch else None
        if stem_branch:
            channels.insert(0, self.stem.channels)
            reductions.insert(0, EDGE_STRIDE)
        self.projections = nn.ModuleList(
            StageProjection(c, branch_channels, gn_groups, r) for c, r in zip(channels, reductions))
        self.edge = nn.Conv2d(branch_channels * len(self.projections), 1, 1, bias=True)
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> "AffinityNet":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def head_parameters(self):
        """The parameters trained by the affinity stage (projections + edge layer)."""
        return [p for m in (self.projections, self.edge) for p in m.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Boundary logits (B, 1, h, w) on the stride-4 grid of the input (h = ⌈H/4⌉ for ResNets)."""
        features = list(self.backbone(x))
        if self.stem is not None:
            features.insert(0, self.stem.take(self.backbone))
        if self.freeze_backbone:
            features = [f.detach() for f in features]
        size = tuple(features[self.reference_stage + int(self.stem is not None)].shape[-2:])
        branches = [proj(f, size) for proj, f in zip(self.projections, features)]
        return self.edge(torch.cat(branches, dim=1))

    def boundary(self, x: torch.Tensor) -> torch.Tensor:
        """Boundary probabilities σ(edge), (B, h, w), float32 under autocast too."""
        return torch.sigmoid(self.forward(x).float()).squeeze(1)

    def pair_affinities(self, x: torch.Tensor, index: PairIndex) -> torch.Tensor:
        """Affinities (B, P, S) of the pairs of `index` (built for the stride-4 grid of x)."""
        return affinity_from_boundary(self.boundary(x), index)

    @torch.no_grad()
    def boundary_with_flip(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Inference boundary map σ(edge(x)/2 + flip(edge(flip(x)))/2), optionally cropped to `size` (B, h, w).

        Averages logits, not probabilities, as IRN / P-NOC do before the random walk.
        """
        logits = self.forward(torch.cat([x, x.flip(-1)], dim=0)).float().squeeze(1)
        plain, flipped = logits.chunk(2, dim=0)
        b = torch.sigmoid(plain / 2 + flipped.flip(-1) / 2)
        if size is not None:
            b = b[..., :size[0], :size[1]]
        return b
