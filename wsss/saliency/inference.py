"""Saliency maps with multi-scale + flip test-time augmentation (C²AM-H inference, PoolNet test).

Two activations:

* "relu" (C²AM / C²AM-H inference): ReLU of the (foreground-oriented) logit map of every view,
  flip-summed, resized to the image and summed over scales, then divided by its own maximum
  (so the map's peak is 1; an all-non-positive map stays 0).
* "sigmoid" (PoolNet, or `--activation sigmoid` upstream): σ(logits) averaged over all views.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from wsss.cams.inference import EPS, multiscale_cams

ACTIVATIONS = ("relu", "sigmoid")


def multiscale_saliency(logit_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                        scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), flip: bool = True,
                        activation: str = "relu", image_resize: str = "bilinear", upsample_stride: int = 1,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                        ) -> torch.Tensor:
    """Saliency (B, H, W) in [0, 1] at the input size; `logit_fn` maps images to (B, 1, h, w) logits.

    image_resize, upsample_stride, mean, std: as :func:`wsss.cams.inference.multiscale_cams` (the thesis
    code's C²AM inference resizes each scale with PIL bicubic and upsamples to 16·⌈H/16⌉ before cropping,
    lucasdavid/PNOC@f250e0d:scripts/ccam/inference.py:91-100,119)."""
    resize = dict(image_resize=image_resize, upsample_stride=upsample_stride, mean=mean, std=std)
    if activation == "relu":
        total = multiscale_cams(logit_fn, images, scales, flip, **resize)[:, 0]
        return total / (total.flatten(1).amax(1)[:, None, None] + EPS)
    if activation == "sigmoid":
        views = len(scales) * (2 if flip else 1)
        sigmoid = lambda x: torch.sigmoid(logit_fn(x).float())  # noqa: E731
        total = multiscale_cams(sigmoid, images, scales, flip, **resize)[:, 0]
        return (total / views).clamp(0.0, 1.0)
    raise ValueError(f"saliency activation={activation!r}; expected one of {ACTIVATIONS}")


def doubled_small_image_saliency(logit_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor
                                 ) -> torch.Tensor:
    """σ (B, H, W) of the thesis code's PoolNet test on a small image (poolnet/solver.py `test`, a side <= 100):
    the image doubled bilinearly, its logits resized back to H × W bilinearly, then the sigmoid. One view."""
    h, w = images.shape[-2:]
    doubled = F.interpolate(images, size=(2 * h, 2 * w), mode="bilinear", align_corners=False)
    logits = F.interpolate(logit_fn(doubled).float(), size=(h, w), mode="bilinear", align_corners=False)
    return torch.sigmoid(logits)[:, 0]


def to_uint8(saliency: torch.Tensor) -> np.ndarray:
    """[0, 1] map → uint8 0..255 (rounded), as the saliency PNGs store it."""
    return (saliency.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
