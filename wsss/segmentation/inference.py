"""Multi-scale + flip test-time augmentation of a segmentation network (thesis §B.2.3).

For each scale the image and its mirror go through the network in one batch (scales cannot share a
batch: their sizes differ); the mirror's logits are flipped back and every view is resized to the
image size. The views are fused into class probabilities in one of three ways:

* `fuse="softmax"` (default): the mean of the 2·S per-view softmaxes (each view votes with a
  distribution, so one over-confident scale cannot dominate);
* `fuse="logits"`: the thesis code's fusion (lucasdavid/PNOC `scripts/segmentation/inference.py` at the
  2023 commits): at each scale the logits of the image and of its mirror are *added*, the sums are averaged
  over the scales, then softmaxed: softmax(2 x mean logit) with flips, softmax(mean logit) without. The
  argmax equals that of the mean logits, but the probabilities are sharper, which changes a CRF fed with
  -log p (`inference.crf`). This is lucasdavid/PNOC@42e611d.
* `fuse="logit_sum"`: lucasdavid/PNOC@f250e0d `scripts/segmentation/inference.py:124-125`, the chain behind
  thesis Table 2: the flip-summed logits are *summed* over the scales, then softmaxed: softmax(2·S x mean
  logit). Same argmax again, sharper still (S = 4 scales: 4 x the temperature of `logits`).

All give (B, K, H, W) probabilities summing to 1 over K at every pixel.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from wsss.cams.inference import IMAGE_RESIZES, scaled_view

FUSIONS = ("softmax", "logits", "logit_sum")
DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(height * scale)), max(1, round(width * scale))


@torch.no_grad()
def multiscale_probabilities(logit_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                             scales: Sequence[float] = DEFAULT_SCALES, flip: bool = True,
                             fuse: str = "softmax", image_resize: str = "bilinear",
                             mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                             ) -> torch.Tensor:
    """Class probabilities (B, K, H, W) averaged over scales and flips.

    Args:
        logit_fn: images (N, 3, h, w) -> logits (N, K, h', w') (any resolution; resized to H×W here).
        images: (B, 3, H, W) normalised images.
        scales: resize factors of the image (bilinear).
        flip: also run the horizontal mirror of every scale.
        fuse: "softmax" (mean of softmaxes), "logits" (softmax of the flip-summed logits averaged over
            scales, 42e611d) or "logit_sum" (softmax of their sum over scales, f250e0d).
        image_resize: "bilinear" (the normalised tensor) or "pil_bicubic" (the uint8 image resized with PIL
            BICUBIC, then normalised with `mean` / `std`, as the thesis code's inference.py:113).
    """
    if fuse not in FUSIONS:
        raise ValueError(f"inference.fuse={fuse!r} is not supported; expected one of {FUSIONS}")
    if not scales:
        raise ValueError("inference.scales is empty; expected at least one scale, e.g. [1.0]")
    if image_resize not in IMAGE_RESIZES:
        raise ValueError(f"inference.image_resize={image_resize!r}; expected one of {IMAGE_RESIZES}")
    if image_resize == "pil_bicubic" and (mean is None or std is None):
        raise ValueError("inference.image_resize=pil_bicubic needs the data set's mean and std")
    b, _, h, w = images.shape
    total = None
    for s in scales:
        size = scaled_size(h, w, s)
        x = scaled_view(images, size, image_resize, mean, std)
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        logits = logit_fn(batch).float()
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        if flip:
            logits = torch.cat([logits[:b], logits[b:].flip(-1)])
        scores = logits.softmax(1) if fuse == "softmax" else logits
        summed = scores.reshape(-1, b, *scores.shape[1:]).sum(0)  # the image + its mirror
        total = summed if total is None else total + summed
    if fuse == "softmax":
        return total / (len(scales) * (2 if flip else 1))
    if fuse == "logit_sum":
        return total.softmax(1)
    return (total / len(scales)).softmax(1)
