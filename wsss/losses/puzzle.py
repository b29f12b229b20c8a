"""Puzzle-CAM: tile/merge of an n x n grid and the puzzle losses (thesis Eq. 5; P-OC Eq. 26).

``L_puzzle = L_cls + L_p-cls + alpha * L_re`` where ``L_cls`` is the ordinary classification loss on the
full image (computed by the stage), ``L_p-cls`` the classification loss on the logits of the merged tile
CAMs and ``L_re`` the L1 distance between the full and the merged CAMs. The weight ``alpha`` (0 -> 4 over
the first half of training) comes from :func:`wsss.schedules.linear_ramp` in the stage.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from torch import Tensor

from wsss.losses.classification import multilabel_soft_margin

Distance = Literal["l1", "l2"]
Normalization = Literal["all", "labelled"]


def _check_grid(n: int) -> None:
    if n < 1:
        raise ValueError(f"puzzle grid size n must be >= 1, got {n}")


def tile(images: Tensor, n: int = 2) -> Tensor:
    """Cut each image into an ``n x n`` grid and stack the tiles along the batch axis, tile-major.

    (B, C, H, W) -> (n*n*B, C, H/n, W/n), ordered [tile (0,0) of all B images, tile (0,1) of all B, ...,
    tile (n-1,n-1) of all B] (raster order; for n=2: TL, TR, BL, BR), as the reference does.
    H and W must be divisible by ``n`` (no padding: pad or crop the batch beforehand).
    """
    _check_grid(n)
    if images.ndim != 4:
        raise ValueError(f"tile expects a (B, C, H, W) tensor, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if h % n or w % n:
        raise ValueError(f"tile: image size {h}x{w} is not divisible by the puzzle grid n={n}; "
                         f"pad or crop the batch to a multiple of {n} first")
    grid = images.reshape(b, c, n, h // n, n, w // n)
    return grid.permute(2, 4, 0, 1, 3, 5).reshape(n * n * b, c, h // n, w // n)


def merge(tiles: Tensor, n: int = 2) -> Tensor:
    """Inverse of :func:`tile`: (n*n*B, C, h, w) tile-major stack -> (B, C, n*h, n*w), exactly."""
    _check_grid(n)
    if tiles.ndim != 4:
        raise ValueError(f"merge expects a (n*n*B, C, h, w) tensor, got shape {tuple(tiles.shape)}")
    nb, c, h, w = tiles.shape
    if nb % (n * n):
        raise ValueError(f"merge: batch of {nb} tiles is not a multiple of n*n={n * n}")
    b = nb // (n * n)
    grid = tiles.reshape(n, n, b, c, h, w)
    return grid.permute(2, 3, 0, 4, 1, 5).reshape(b, c, n * h, n * w)


def gap_logits(cams: Tensor) -> Tensor:
    """Logits as the spatial mean of the class maps: (B, C, h, w) -> (B, C)."""
    return cams.mean(dim=(2, 3))


def puzzle_classification_loss(merged_cams: Tensor, labels: Tensor, smoothing: float = 0.0) -> Tensor:
    """``L_p-cls``: multilabel soft-margin loss of GAP(merged tile CAMs) against the (smoothed) labels.

    GAP of the merged map equals the mean of the n*n tiles' logits; it is one loss per image, not one per
    tile.
    """
    return multilabel_soft_margin(gap_logits(merged_cams), labels, smoothing=smoothing)


def _check_same_shape(cams: Tensor, merged_cams: Tensor, labels: Tensor) -> None:
    if cams.shape != merged_cams.shape:
        raise ValueError(
            f"reconstruction loss: full CAMs {tuple(cams.shape)} and merged tile CAMs "
            f"{tuple(merged_cams.shape)} differ; the crop size must be a multiple of n * output stride")
    if labels.shape != cams.shape[:2]:
        raise ValueError(f"labels of shape {tuple(labels.shape)} do not match CAMs {tuple(cams.shape)} "
                         f"(expected (B, C))")


def reconstruction_loss(
    cams: Tensor,
    merged_cams: Tensor,
    labels: Tensor,
    distance: Distance = "l1",
    normalization: Normalization = "all",
) -> Tensor:
    """``L_re``: distance between the raw (pre-ReLU, unnormalised) full and merged CAMs on labelled classes.

    Each entry is ``d(A - A_re) * y_c`` with ``y`` the *unsmoothed* multi-hot labels and ``d`` = |.| (l1,
    the reference default) or (.)^2 (l2). Gradients flow into both maps.

    normalization:
      "all"      - mean over all B*C*h*w entries, masked-out classes included in the denominator (the
                   reference ``masking`` option and default,
                   shjo-april/PuzzleCAM@659b4c1:train_classification_with_puzzle.py);
      "labelled" - per image, mean over its labelled classes' h*w entries, then mean over the batch (the
                   reference ``selection`` option). An image without labels contributes 0.
    """
    _check_same_shape(cams, merged_cams, labels)
    diff = merged_cams - cams
    if distance == "l1":
        error = diff.abs()
    elif distance == "l2":
        error = diff.pow(2)
    else:
        raise ValueError(f"reconstruction distance must be 'l1' or 'l2', got {distance!r}")
    masked = error * labels[:, :, None, None].to(error.dtype)
    if normalization == "all":
        return masked.mean()
    if normalization == "labelled":
        per_image = masked.sum(dim=(1, 2, 3))
        entries = labels.to(error.dtype).sum(dim=1) * cams.shape[2] * cams.shape[3]
        return (per_image / entries.clamp(min=1.0)).mean()
    raise ValueError(f"reconstruction normalization must be 'all' or 'labelled', got {normalization!r}")


class PuzzleLosses(NamedTuple):
    """The two Puzzle terms; the stage weights ``reconstruction`` by alpha_p."""

    classification: Tensor  # L_p-cls
    reconstruction: Tensor  # L_re (unweighted)


def puzzle_losses(
    cams: Tensor,
    merged_cams: Tensor,
    labels: Tensor,
    smoothing: float = 0.0,
    distance: Distance = "l1",
    normalization: Normalization = "all",
) -> PuzzleLosses:
    """``L_p-cls`` and ``L_re`` of Eq. 5 for full CAMs ``A`` (B, C, h, w) and ``A_re = merge(f(tile(x)))``.

    ``labels`` are the unsmoothed multi-hot labels (B, C); ``smoothing`` only affects ``L_p-cls``.
    """
    return PuzzleLosses(
        classification=puzzle_classification_loss(merged_cams, labels, smoothing=smoothing),
        reconstruction=reconstruction_loss(cams, merged_cams, labels, distance, normalization),
    )
