"""Random walk propagation of CAMs over boundary-based affinities, and the pseudo masks made from it.

Reference (jiwoon-ahn/irn@a2ece00:misc/indexing.py `propagate_to_edge`,
lucasdavid/PNOC@f250e0d:scripts/rw/inference.py): A is the N×N symmetric affinity of the stride-4 grid (N =
h·w): `A_ij = a_ij^β` for every pair with 0 < d² < r² (a_ij = 1 − max σ(edge) along the path, pairs leaving
the image have a = 0) and `A_ii = 1`; `T = A / colsum(A)` (column-stochastic); `T ← T·T` exp_times times
(T^256); `rw = v·T` for the seeds `v = cam ⊙ (1 − B)` of the foreground classes only (no background plane:
background is a constant threshold applied afterwards, `pseudo_mask`).

Fast path: since A is symmetric, `v·T = D⁻¹ A v` with D = diag(colsum A), so `v·T^(2^k)` is 2^k
applications of the sparse row-stochastic operator M = D⁻¹A, which has at most 2·P + 1 non-zeros per
row (69 for r = 5). All images of a batch share one block-diagonal CSR matrix and all classes are the
columns of one dense right-hand side: 2^k sparse × dense products, on whatever device the inputs are.
Same mathematics as the dense squaring; O(2^k · 69 · N · C) work and O(69 · N) memory instead of
O(k · N³) and O(N²).

Batching images of different sizes: pad the boundary map with 1.0 and the CAMs with 0; padded pixels
then have zero affinity to every image pixel and their seeds stay 0.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from wsss.ops.crf import crf_labels
from wsss.ops.pairs import PairIndex, affinity_from_boundary
from wsss.refine.affinity_labels import unit_saliency


def _check_inputs(seeds: torch.Tensor, boundary: torch.Tensor) -> None:
    if seeds.ndim != 4 or boundary.ndim != 3 or seeds.shape[0] != boundary.shape[0] \
            or seeds.shape[-2:] != boundary.shape[-2:]:
        raise ValueError(f"seeds have shape {tuple(seeds.shape)} and boundary {tuple(boundary.shape)}; expected "
                         "(B, C, h, w) and (B, h, w) on the same grid")


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def grid_affinities(boundary: torch.Tensor, radius: int = 5) -> tuple[torch.Tensor, PairIndex]:
    """Affinities of the half-disc pairs of every grid pixel: boundary (B, h, w) → (B, P, h, w).

    The boundary is padded with 1.0 (f = radius − 1 columns left/right, f rows at the bottom) so that
    every pixel of the grid is a source and pairs leaving the grid get affinity 0 (IRN pads likewise).
    """
    f = radius - 1
    padded = F.pad(boundary, (f, f, 0, f), value=1.0)
    index = PairIndex(padded.shape[-2], padded.shape[-1], radius)
    aff = affinity_from_boundary(padded, index)
    return aff.view(*boundary.shape[:-2], len(index.offsets), *boundary.shape[-2:]), index


def _pair_coordinates(index: PairIndex, height: int, width: int, device: torch.device):
    """Flat (src, dst) indices of the in-grid pairs of every offset, and the mask of those pairs (P, h, w)."""
    offsets = torch.tensor(index.offsets, device=device)
    ys = torch.arange(height, device=device).view(1, -1, 1)
    xs = torch.arange(width, device=device).view(1, 1, -1)
    dst_y = ys + offsets[:, 0].view(-1, 1, 1)
    dst_x = xs + offsets[:, 1].view(-1, 1, 1)
    inside = (dst_y < height) & (dst_x >= 0) & (dst_x < width)
    src = (ys * width + xs).expand_as(inside)
    dst = dst_y * width + dst_x
    return src[inside], dst[inside], inside


def _shift(grid: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[..., y, x] = grid[..., y − dy, x − dx] where that is on the grid, else 0 (dy ≥ 0)."""
    height, width = grid.shape[-2:]
    out = torch.zeros_like(grid)
    dst_x, src_x = (slice(dx, width), slice(0, width - dx)) if dx >= 0 else (slice(0, width + dx), slice(-dx, width))
    out[..., dy:, dst_x] = grid[..., :height - dy, src_x]
    return out


def neighbourhood_weights(boundary: torch.Tensor, beta: float = 10.0, radius: int = 5):
    """Row-normalised weights of every pixel to its full-disc neighbours (itself included).

    Returns (weights (B, O, h, w), offsets [(dy, dx)] sorted lexicographically, inside (O, h, w)) with
    O = 2·P + 1; `weights[:, o, y, x]` = M[(y, x), (y + dy, x + dx)], zero where the neighbour is off the grid.
    """
    height, width = boundary.shape[-2:]
    aff, index = grid_affinities(boundary, radius)
    half = aff.pow(beta)                                   # pairs leaving the grid have a = 0 → weight 0
    planes = {(0, 0): torch.ones_like(half[:, 0])}
    for p, (dy, dx) in enumerate(index.offsets):
        planes[(dy, dx)] = half[:, p]
        planes[(-dy, -dx)] = _shift(half[:, p], dy, dx)    # the same pair seen from its destination
    offsets = sorted(planes)
    delta = torch.tensor(offsets, device=boundary.device)
    ys = torch.arange(height, device=boundary.device).view(1, -1, 1) + delta[:, 0].view(-1, 1, 1)
    xs = torch.arange(width, device=boundary.device).view(1, 1, -1) + delta[:, 1].view(-1, 1, 1)
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    weights = torch.stack([planes[o] for o in offsets], dim=1) * inside   # also right for β = 0 (0^0 = 1)
    return weights / weights.sum(dim=1, keepdim=True), offsets, inside


def transition_operator(boundary: torch.Tensor, beta: float = 10.0, radius: int = 5) -> torch.Tensor:
    """Block-diagonal sparse CSR matrix M = D⁻¹A of shape (B·N, B·N) for boundary maps (B, h, w).

    Built directly in CSR order (rows = pixels, columns ascending because the offsets are sorted), so no
    COO sort and O(69·N) memory.
    """
    batch, height, width = boundary.shape
    n = height * width
    weights, offsets, inside = neighbourhood_weights(boundary.to(_work_dtype(boundary)), beta, radius)
    inside_last = inside.permute(1, 2, 0)                                       # (h, w, O), row-major pixels
    values = weights.permute(0, 2, 3, 1)[:, inside_last].flatten()
    delta = torch.tensor([dy * width + dx for dy, dx in offsets], device=boundary.device)
    pixel = torch.arange(n, device=boundary.device).view(height, width, 1)
    cols = (pixel + delta)[inside_last]
    cols = (cols.unsqueeze(0) + n * torch.arange(batch, device=boundary.device).view(-1, 1)).flatten()
    counts = inside_last.sum(-1).flatten().repeat(batch)
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    if values.numel() < 2 ** 31:     # 32-bit indices: faster on CPU, the native format of cuSPARSE
        crow, cols = crow.int(), cols.int()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, (batch * n, batch * n), check_invariants=False)


@torch.no_grad()
def propagate(seeds: torch.Tensor, boundary: torch.Tensor, beta: float = 10.0, exp_times: int = 8,
              radius: int = 5) -> torch.Tensor:
    """`v·T^(2^exp_times)` for seeds (B, C, h, w) with the sparse operator; returns (B, C, h, w).

    Always float32 or float64, also under autocast (upstream's fp16 random walk loses ~2e-3 relative
    accuracy); no autograd graph.
    """
    _check_inputs(seeds, boundary)
    with torch.autocast(seeds.device.type, enabled=False):
        return _propagate_sparse(seeds, boundary, beta, exp_times, radius)


def _propagate_sparse(seeds: torch.Tensor, boundary: torch.Tensor, beta: float, exp_times: int,
                      radius: int) -> torch.Tensor:
    batch, channels, height, width = seeds.shape
    dtype = _work_dtype(seeds)
    matrix = transition_operator(boundary.to(dtype), beta, radius)
    x = seeds.to(dtype).permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    for _ in range(2 ** exp_times):
        x = matrix @ x
    return x.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()


def random_walk(cams: torch.Tensor, boundary: torch.Tensor, beta: float = 10.0, exp_times: int = 8,
                radius: int = 5, seed_with_boundary: bool = True) -> torch.Tensor:
    """Propagate stride-4 CAMs (B, C, h, w) of the present classes over boundary maps (B, h, w) ∈ [0, 1].

    Seeds are `cam ⊙ (1 − B)` when `seed_with_boundary` (IRN / P-NOC). Zero-filled channels (absent
    classes used to pad a batch) stay zero. Returns float32 (float64 if the CAMs are float64).
    """
    _check_inputs(cams, boundary)
    seeds = cams * (1.0 - boundary.unsqueeze(1)) if seed_with_boundary else cams
    return propagate(seeds, boundary, beta, exp_times, radius)


def dense_affinity_matrix(boundary: torch.Tensor, beta: float = 10.0, radius: int = 5) -> torch.Tensor:
    """The reference dense A^β (N, N) of one boundary map (h, w), unit diagonal."""
    height, width = boundary.shape
    aff, index = grid_affinities(boundary.unsqueeze(0), radius)
    src, dst, inside = _pair_coordinates(index, height, width, boundary.device)
    weights = aff[0].pow(beta)[inside]
    n = height * width
    matrix = torch.eye(n, dtype=boundary.dtype, device=boundary.device)
    matrix[src, dst] = weights
    matrix[dst, src] = weights
    return matrix


@torch.no_grad()
def propagate_dense(seeds: torch.Tensor, boundary: torch.Tensor, beta: float = 10.0, exp_times: int = 8,
                    radius: int = 5) -> torch.Tensor:
    """Reference implementation (tests and benchmarks only): dense T, squared exp_times times, per image."""
    _check_inputs(seeds, boundary)
    dtype = _work_dtype(seeds)
    out = []
    for v, b in zip(seeds.to(dtype), boundary.to(dtype)):
        transition = dense_affinity_matrix(b, beta, radius)
        transition /= transition.sum(dim=0, keepdim=True)
        for _ in range(exp_times):
            transition = transition @ transition
        out.append((v.flatten(1) @ transition).view_as(v))
        del transition
    return torch.stack(out)


def random_walk_dense(cams: torch.Tensor, boundary: torch.Tensor, beta: float = 10.0, exp_times: int = 8,
                      radius: int = 5, seed_with_boundary: bool = True) -> torch.Tensor:
    """Dense counterpart of `random_walk` (O(N²) memory; tests and benchmarks only)."""
    _check_inputs(cams, boundary)
    seeds = cams * (1.0 - boundary.unsqueeze(1)) if seed_with_boundary else cams
    return propagate_dense(seeds, boundary, beta, exp_times, radius)


def upsample_and_normalise(rw: torch.Tensor, size: tuple[int, int], stride: int = 4) -> torch.Tensor:
    """Bilinear ×stride upsampling (align_corners=False), crop to `size`, divide by the global max per image.

    rw: (B, C, h, w) → (B, C, H, W); the max is over all classes and pixels of an image (not per class).
    """
    up = F.interpolate(rw, scale_factor=stride, mode="bilinear", align_corners=False)
    if up.shape[-2] < size[0] or up.shape[-1] < size[1]:
        raise ValueError(f"rw maps {tuple(rw.shape[-2:])} ×{stride} are smaller than the image size {size}")
    up = up[..., :size[0], :size[1]]
    peak = up.flatten(1).amax(dim=1).clamp_min(torch.finfo(up.dtype).tiny).view(-1, 1, 1, 1)
    return up / peak


def pseudo_mask(rw: np.ndarray, class_ids: np.ndarray, image: np.ndarray, bg_threshold: float = 0.3,
                crf_iterations: int = 1, gt_prob: float = 0.9, saliency: np.ndarray | None = None) -> np.ndarray:
    """Pseudo mask of one image from its normalised RW maps (n, H, W) of the present classes.

    Background score: the constant `bg_threshold` (ties go to background), or `1 − saliency` when a
    saliency map (H, W; uint8 0..255 or float in [0, 1]) is given — P-NOC upstream used the saliency
    itself there (lucasdavid/PNOC@6c8950a:scripts/rw/make_pseudo_labels.py). The argmax is refined by a label
    CRF (`crf_iterations`, `gt_prob`; 0 iterations skips it) and mapped to class ids: 0 = background, c + 1 =
    class c.

    Returns an (H, W) uint8 mask with no ignore pixels.
    """
    rw = np.asarray(rw, dtype=np.float32)
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    if rw.ndim != 3 or rw.shape[0] != class_ids.size:
        raise ValueError(f"rw has shape {rw.shape} for {class_ids.size} class ids; expected (n_classes, H, W)")
    height, width = rw.shape[1:]
    if class_ids.size == 0:
        return np.zeros((height, width), np.uint8)
    if saliency is None:
        bg = np.full((1, height, width), bg_threshold, np.float32)
    else:
        bg = 1.0 - unit_saliency(saliency, (height, width))[None]
    labels = np.argmax(np.concatenate([bg, rw]), axis=0)
    if crf_iterations > 0:
        labels = crf_labels(image, labels, n_labels=class_ids.size + 1, iterations=crf_iterations, gt_prob=gt_prob)
    keys = np.concatenate([[0], class_ids + 1])
    return keys[labels].astype(np.uint8)
