"""Pixel pairs within a radius on a feature grid (IRN `PathIndex`), their labels and their affinities.

A pair joins a *source* pixel p to p + (dy, dx) for every offset of the half disc
`{(dy, dx): dy ∈ [0, r), dx² + dy² < r², dx > 0 if dy = 0}` (each undirected pair once; r=5 → 34
offsets, r=10 → 152). Sources are the grid cropped by f = r − 1 rows at the bottom and f columns on each
side, so every destination lies on the grid: (h − f)(w − 2f) sources
(jiwoon-ahn/irn@a2ece00:misc/indexing.py).

The *path* of an offset is every integer point of the bounding box of (0,0)–(dy,dx) whose squared
distance to the segment's line is < 1; the IRN affinity of a pair is `1 − max_{k ∈ path} B_k` for a
boundary map B ∈ [0, 1] (jiwoon-ahn/irn@a2ece00:misc/indexing.py).

Everything is computed with strided slices of the grid (one per offset / path point): no loop over
pixels, no large index tensors, any device, any leading batch dimensions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch

IGNORE_INDEX = 255


def half_disc_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) of the half disc of `radius`, ordered by dy then dx."""
    if radius < 2:
        raise ValueError(f"radius={radius}; expected an integer >= 2")
    floor = radius - 1
    return [(dy, dx) for dy in range(0, floor + 1) for dx in range(-floor, floor + 1)
            if dy * dy + dx * dx < radius * radius and (dy > 0 or dx > 0)]


def offset_path(dy: int, dx: int) -> list[tuple[int, int]]:
    """Integer points (y, x) between (0, 0) and (dy, dx), both included, within distance 1 of the line."""
    norm = dy * dy + dx * dx
    ys = range(min(0, dy), max(0, dy) + 1)
    xs = range(min(0, dx), max(0, dx) + 1)
    return [(y, x) for y in ys for x in xs if (dy * x - dx * y) ** 2 < norm]


class PairLabels(NamedTuple):
    """Boolean masks over pairs, each (..., P, S): both bg / same fg class / different classes."""

    bg_pos: torch.Tensor
    fg_pos: torch.Tensor
    neg: torch.Tensor


@dataclass(frozen=True)
class PairIndex:
    """The half-disc pairs of an h×w grid (IRN `PathIndex(radius, (h, w))`).

    Attributes:
        height, width: grid size.
        radius: pairs satisfy dy² + dx² < radius² (10 for training labels, 5 for the random walk).
    """

    height: int
    width: int
    radius: int = 10

    def __post_init__(self):
        floor = self.radius - 1
        if self.height <= floor or self.width <= 2 * floor:
            raise ValueError(f"grid {self.height}x{self.width} is too small for radius {self.radius}; expected "
                             f"height > {floor} and width > {2 * floor}")

    @property
    def floor(self) -> int:
        return self.radius - 1

    @cached_property
    def offsets(self) -> list[tuple[int, int]]:
        return half_disc_offsets(self.radius)

    @cached_property
    def paths(self) -> list[list[tuple[int, int]]]:
        return [offset_path(dy, dx) for dy, dx in self.offsets]

    @property
    def source_shape(self) -> tuple[int, int]:
        return self.height - self.floor, self.width - 2 * self.floor

    @property
    def num_pairs(self) -> int:
        sh, sw = self.source_shape
        return len(self.offsets) * sh * sw

    def shifted(self, grid: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        """View of `grid` (..., h, w) at the sources moved by (dy, dx), flattened to (..., S)."""
        self._check_grid(grid)
        sh, sw = self.source_shape
        f = self.floor
        return grid[..., dy:dy + sh, f + dx:f + dx + sw].flatten(-2)

    def sources(self, grid: torch.Tensor) -> torch.Tensor:
        """Values of `grid` (..., h, w) at the sources: (..., S)."""
        return self.shifted(grid, 0, 0)

    def destinations(self, grid: torch.Tensor) -> torch.Tensor:
        """Values of `grid` (..., h, w) at the destinations: (..., P, S)."""
        return torch.stack([self.shifted(grid, dy, dx) for dy, dx in self.offsets], dim=-2)

    @cached_property
    def src(self) -> torch.Tensor:
        """Flat grid indices of the sources, (S,)."""
        flat = torch.arange(self.height * self.width).view(self.height, self.width)
        return self.sources(flat)

    @cached_property
    def dst(self) -> torch.Tensor:
        """Flat grid indices of the destinations, (P, S)."""
        flat = torch.arange(self.height * self.width).view(self.height, self.width)
        return self.destinations(flat)

    def _check_grid(self, grid: torch.Tensor) -> None:
        if grid.shape[-2:] != (self.height, self.width):
            raise ValueError(f"grid has spatial shape {tuple(grid.shape[-2:])}; this PairIndex was built for "
                             f"({self.height}, {self.width})")


def pair_labels(labels: torch.Tensor, index: PairIndex, ignore_index: int = IGNORE_INDEX) -> PairLabels:
    """Pair labels from a label map (..., h, w) with 0 = background, c > 0 = class, `ignore_index` = unsure.

    bg_pos: both ends background; fg_pos: both ends the same foreground class; neg: different labels;
    pairs touching an ignored pixel are in none of the three (IRN `GetAffinityLabelFromIndices`).
    """
    src = index.sources(labels).unsqueeze(-2)
    dst = index.destinations(labels)
    valid = (src != ignore_index) & (dst != ignore_index)
    same = src == dst
    return PairLabels(bg_pos=valid & same & (src == 0), fg_pos=valid & same & (src != 0), neg=valid & ~same)


def affinity_from_boundary(boundary: torch.Tensor, index: PairIndex) -> torch.Tensor:
    """IRN affinities `1 − max_{k ∈ path(i, j)} B_k` for every pair; boundary (..., h, w) → (..., P, S).

    Differentiable (gradients reach the arg-max pixel of every path).
    """
    per_offset = []
    for (dy, dx), path in zip(index.offsets, index.paths):
        along_path = torch.stack([index.shifted(boundary, y, x) for y, x in path], dim=-1)
        per_offset.append(along_path.amax(dim=-1))
    return 1.0 - torch.stack(per_offset, dim=-2)


def nearest_indices(source: int, target: int, device=None) -> torch.Tensor:
    """Source rows sampled by PIL's NEAREST resize from `source` to `target` pixels: the pixel under each
    target pixel's centre, ``floor((i + 0.5) * source / target)`` (4i + 2 for a 4x reduction)."""
    scale = source / target
    idx = torch.floor((torch.arange(target, device=device, dtype=torch.float64) + 0.5) * scale).long()
    return idx.clamp_(max=source - 1)


def downsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of integer label maps (..., H, W) to `size` (the stride-4 grid), sampling
    pixel centres as PIL NEAREST does (the thesis code resizes the affinity labels with PIL): rows and
    columns 4i + 2 for a 4x reduction (torch's `nearest` would take 4i)."""
    rows = nearest_indices(labels.shape[-2], size[0], labels.device)
    cols = nearest_indices(labels.shape[-1], size[1], labels.device)
    return labels.index_select(-2, rows).index_select(-1, cols)


def grid_size(height: int, width: int, stride: int = 4) -> tuple[int, int]:
    """Feature-grid size ⌈H/stride⌉ × ⌈W/stride⌉ used for the stride-4 CAMs and boundary maps."""
    return math.ceil(height / stride), math.ceil(width / stride)
