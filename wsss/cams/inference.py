"""Class activation maps with multi-scale and flip test-time augmentation.

For each scale the image and its mirror go through the network in one batch; the ReLU'd maps of
the mirror are flipped back and added, every scale is resized to the image size and summed, and
each present class is divided by its own maximum (lucasdavid/PNOC@f250e0d:scripts/cam/inference.py). Scales
cannot share a batch (their sizes differ and zero-padding would change the maps near the border), so a predict
step makes one forward per scale with every image and its flip stacked.

Two switches reach the thesis code (lucasdavid/PNOC@f250e0d scripts/cam/inference.py):

* `image_resize="pil_bicubic"`: each scale is made from the uint8 image with PIL's bicubic resize, then
  normalised (the thesis code), instead of a bilinear resize of the normalised tensor ("bilinear");
* `upsample_stride=16`: every scale's maps are upsampled to 16·⌈H/16⌉ × 16·⌈W/16⌉ and cropped to H × W
  (the thesis code's `get_strided_up_size`), instead of straight to H × W (1). The two place the grid of
  the maps differently whenever H or W is not a multiple of 16.

and a third decides where the mirror's maps are flipped back (`flip_merge`):

* "grid" (the thesis code): on the network's grid, added to the image's maps, the sum then upsampled and
  cropped. The mirror's grid starts at its own left edge, i.e. at the image's right edge, so with
  `upsample_stride` > 1 its cropped map lands 16·⌈W/16⌉ − W pixels (of that scale) right of where it belongs;
* "image": each view upsampled and cropped to its own image, then the mirror's map flipped back: both views
  line up, and the maps of a mirrored image are the mirrored maps.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

EPS = 1e-5
IMAGE_RESIZES = ("bilinear", "pil_bicubic")
FLIP_MERGES = ("grid", "image")
SEED_STRIDE = 4


def scaled_view(images: torch.Tensor, size: tuple[int, int], image_resize: str, mean, std) -> torch.Tensor:
    """`images` at `size`: as they are, PIL bicubic on the uint8 image, or bilinear on the normalised tensor."""
    if size == tuple(images.shape[-2:]):
        return images
    if image_resize == "pil_bicubic":
        return pil_bicubic_resize(images, size, mean, std)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def pil_bicubic_resize(images: torch.Tensor, size: tuple[int, int], mean: Sequence[float],
                       std: Sequence[float]) -> torch.Tensor:
    """Normalised images (B, 3, H, W) -> the same images resized to `size` with PIL BICUBIC on uint8, then
    normalised again. Images normalised from uint8 are recovered exactly (rounding to the nearest level)."""
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    pixels = ((images.detach().double().cpu() * s + m) * 255.0).round().clamp(0, 255).to(torch.uint8)
    resized = [np.asarray(Image.fromarray(p.permute(1, 2, 0).numpy()).resize((size[1], size[0]), Image.BICUBIC))
               for p in pixels]
    out = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).double() / 255.0
    return ((out - m) / s).to(device=images.device, dtype=images.dtype)


def strided_up_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """stride·⌈H/stride⌉ × stride·⌈W/stride⌉ (1 keeps the size)."""
    return stride * math.ceil(height / stride), stride * math.ceil(width / stride)


def multiscale_cams(cam_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                    scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), flip: bool = True,
                    image_resize: str = "bilinear", upsample_stride: int = 1,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    flip_merge: str = "image") -> torch.Tensor:
    """Summed ReLU CAMs (B, C, H, W) at the input size. `cam_fn` maps images to raw CAMs.

    image_resize: "bilinear" (normalised tensor) or "pil_bicubic" (uint8 image, needs `mean` and `std`).
    upsample_stride: maps are upsampled to the image size rounded up to this multiple, then cropped.
    flip_merge: where the mirror's maps are flipped back, "image" or "grid" (the thesis code; module doc).
    """
    return multiscale_cams_and_seeds(cam_fn, images, scales, flip, image_resize, upsample_stride, mean, std,
                                     seeds=False, flip_merge=flip_merge)[0]


def multiscale_cams_and_seeds(cam_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                              scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), flip: bool = True,
                              image_resize: str = "bilinear", upsample_stride: int = 1,
                              mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                              seeds: bool = True,
                              flip_merge: str = "image") -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`multiscale_cams` and, with `seeds`, the stride-4 maps (B, C, ⌈H/4⌉, ⌈W/4⌉): every scale's maps
    resized bilinearly to the stride-4 grid and summed, the random walk's seeds in the thesis code
    (scripts/cam/inference.py `cams_st`)."""
    if image_resize not in IMAGE_RESIZES:
        raise ValueError(f"inference.image_resize={image_resize!r}; expected one of {IMAGE_RESIZES}")
    if image_resize == "pil_bicubic" and (mean is None or std is None):
        raise ValueError("inference.image_resize=pil_bicubic needs the data set's mean and std")
    if flip_merge not in FLIP_MERGES:
        raise ValueError(f"inference.flip_merge={flip_merge!r}; expected one of {FLIP_MERGES}")
    b, _, h, w = images.shape
    up = strided_up_size(h, w, int(upsample_stride))
    grid = (math.ceil(h / SEED_STRIDE), math.ceil(w / SEED_STRIDE))
    total = strided = None
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = scaled_view(images, size, image_resize, mean, std)
        views = torch.cat([x, x.flip(-1)]) if flip else x
        cams = F.relu(cam_fn(views).float())
        if flip and flip_merge == "image":
            full = F.interpolate(cams, size=up, mode="bilinear", align_corners=False)[..., :h, :w]
            full = full[:b] + full[b:].flip(-1)
        if flip:
            cams = cams[:b] + cams[b:].flip(-1)
        if not flip or flip_merge == "grid":
            full = F.interpolate(cams, size=up, mode="bilinear", align_corners=False)[..., :h, :w]
        total = full if total is None else total + full
        if seeds:
            st = F.interpolate(cams, size=grid, mode="bilinear", align_corners=False)
            strided = st if strided is None else strided + st
    return total, strided


def inference_precision(device_type: str, fp32: bool):
    """Context of a CAM forward: autocast off when `fp32` (the thesis code infers in float32; under
    trainer=gpu Lightning would otherwise run the predict step in bf16 autocast)."""
    return torch.autocast(device_type, enabled=False) if fp32 else contextlib.nullcontext()


def normalize_present(cams: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of the present classes of one image, each divided by its maximum: (n, H, W), class ids (n,)."""
    keys = torch.nonzero(label > 0.5).flatten()
    maps = cams[keys]
    maps = maps / (maps.flatten(1).amax(1)[:, None, None] + EPS)
    return maps, keys
