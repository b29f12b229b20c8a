"""Class activation maps with multi-scale and flip test-time augmentation.

For each scale the image and its mirror go through the network in one batch; the ReLU'd maps of
the mirror are flipped back and added, every scale is resized to the image size and summed, and
each present class is divided by its own maximum (pnoc-spec §7.1). Scales cannot share a batch
(their sizes differ and zero-padding would change the maps near the border), so a predict step
makes one forward per scale with every image and its flip stacked.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

EPS = 1e-5


def multiscale_cams(cam_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                    scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), flip: bool = True) -> torch.Tensor:
    """Summed ReLU CAMs (B, C, H, W) at the input size. `cam_fn` maps images to raw CAMs."""
    b, _, h, w = images.shape
    total = None
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = images if size == (h, w) else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        views = torch.cat([x, x.flip(-1)]) if flip else x
        cams = F.relu(cam_fn(views).float())
        if flip:
            cams = cams[:b] + cams[b:].flip(-1)
        cams = F.interpolate(cams, size=(h, w), mode="bilinear", align_corners=False)
        total = cams if total is None else total + cams
    return total


def normalize_present(cams: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of the present classes of one image, each divided by its maximum: (n, H, W), class ids (n,)."""
    keys = torch.nonzero(label > 0.5).flatten()
    maps = cams[keys]
    maps = maps / (maps.flatten(1).amax(1)[:, None, None] + EPS)
    return maps, keys
