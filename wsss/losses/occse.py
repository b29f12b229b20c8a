"""OC-CSE: class-specific adversarial erasing (thesis Eq. 6; the lambda_cse term of Eq. 26-27).

For each image a class ``r`` is drawn among its labels, the generator's CAM of ``r`` is turned into a soft
mask ``M`` in [0, 1] at image resolution, the image is erased as ``x * (1 - M)`` and the ordinary
classifier ``oc`` is asked to find every label except ``r``:
``L_cse = l_bce(oc(x * (1 - M_r)), y minus {r})``. The generator learns through ``M`` only (no detach).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.distributed import gather_rows
from wsss.losses.classification import multilabel_soft_margin

NO_CLASS = -1
"""Value of ``r`` for an image without any positive label: nothing is erased and its OC target is y."""

MaskNormalization = Literal["batch", "image"]


def sample_erased_classes(labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one class ``r`` per image, uniformly among its positive labels (``y > 0.5``).

    labels: (B, C) multi-hot. Returns a (B,) int64 tensor on ``labels.device``; images with no positive
    label get :data:`NO_CLASS` (-1). ``generator`` makes the draw reproducible (it may live on another
    device than ``labels``; the draw is made on the generator's device).
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be (B, C) multi-hot, got shape {tuple(labels.shape)}")
    device = generator.device if generator is not None else labels.device
    scores = torch.rand(labels.shape, generator=generator, device=device).to(labels.device)
    positive = labels > 0.5
    # argmax of i.i.d. uniform scores restricted to the positives is a uniform choice among them.
    erased = torch.where(positive, scores, torch.full_like(scores, -1.0)).argmax(dim=1)
    return torch.where(positive.any(dim=1), erased, torch.full_like(erased, NO_CLASS))


def _check_erased(erased: Tensor, batch: int, num_classes: int) -> None:
    if erased.shape != (batch,):
        raise ValueError(f"erased classes must have shape ({batch},), got {tuple(erased.shape)}")
    if erased.numel() and (erased.min() < NO_CLASS or erased.max() >= num_classes):
        raise ValueError(f"erased classes must lie in [{NO_CLASS}, {num_classes - 1}], "
                         f"got {erased.tolist()}")


def erased_one_hot(erased: Tensor, num_classes: int) -> Tensor:
    """(B,) class indices (``NO_CLASS`` allowed) -> (B, C) float one-hot, all-zero rows for ``NO_CLASS``."""
    _check_erased(erased, erased.shape[0], num_classes)
    classes = torch.arange(num_classes, device=erased.device)
    return (erased[:, None] == classes[None, :]).float()


def remaining_labels(labels: Tensor, erased: Tensor) -> Tensor:
    """``y minus {r}``: the labels with the erased class zeroed, ``clip(y - onehot(r), 0)``."""
    one_hot = erased_one_hot(erased, labels.shape[1]).to(labels.dtype)
    return (labels - one_hot).clamp(min=0)


def class_activation_mask(
    cams: Tensor,
    erased: Tensor,
    size: tuple[int, int],
    normalization: MaskNormalization = "batch",
    relu_before_resize: bool = True,
    eps: float = 1e-5,
    gather_max: bool = False,
) -> Tensor:
    """Normalised map ``psi(A^r)`` of each image's erased class at image resolution: (B, 1, H, W) in [0, 1).

    The raw CAM of class ``r`` (B, C, h, w) -> ReLU and bilinear resize to ``size`` (align_corners=False),
    divided by its maximum + ``eps``. Images with ``r = NO_CLASS`` get an all-zero map.

    normalization: "batch" divides by the maximum over the whole batch (OC-CSE's and the thesis code's
    soft mask), "image" by each image's own maximum (the thesis code's hard mask of P-NOC).
    relu_before_resize: True (the thesis code, lucasdavid/PNOC@f250e0d:core/occse.py, for both masks) applies ReLU
    on the CAM grid and then resizes; False resizes first (the original KAIST OC-CSE), which lets negative
    activations pull the interpolated mask down near object borders (smaller, lighter masks).
    gather_max: under DDP, the "batch" maximum is taken over the images of every rank (the thesis code's
    DataParallel computed the mask on the gathered batch: lucasdavid/PNOC@f250e0d:scripts/cam/train_poc.py:238,256,
    core/occse.py); False takes each rank's own maximum. No effect in one process.
    Differentiable: gradients flow into ``cams`` (through the maximum too); detach the CAMs for a fixed mask.
    """
    if cams.ndim != 4:
        raise ValueError(f"cams must be (B, C, h, w), got shape {tuple(cams.shape)}")
    batch, num_classes = cams.shape[:2]
    _check_erased(erased, batch, num_classes)
    index = erased.clamp(min=0).to(cams.device)
    maps = cams[torch.arange(batch, device=cams.device), index][:, None]  # (B, 1, h, w)
    maps = maps * (erased >= 0).to(device=cams.device, dtype=cams.dtype)[:, None, None, None]
    if relu_before_resize:
        maps = F.interpolate(F.relu(maps), size=size, mode="bilinear", align_corners=False)
    else:
        maps = F.relu(F.interpolate(maps, size=size, mode="bilinear", align_corners=False))
    if normalization == "batch":
        peaks = maps.amax(dim=(1, 2, 3))
        peak = (gather_rows(peaks) if gather_max else peaks).amax()
    elif normalization == "image":
        peak = maps.amax(dim=(1, 2, 3), keepdim=True)
    else:
        raise ValueError(f"mask normalization must be 'batch' or 'image', got {normalization!r}")
    return maps / (peak + eps)


def soft_erase(images: Tensor, mask: Tensor) -> Tensor:
    """``x * (1 - M)`` on the normalised images: fully erased pixels become 0 (the dataset mean colour)."""
    if mask.shape[0] != images.shape[0] or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match images {tuple(images.shape)}; "
                         f"expected (B, 1, H, W)")
    return images * (1 - mask)


def soft_erase_classes(
    images: Tensor,
    cams: Tensor,
    erased: Tensor,
    normalization: MaskNormalization = "batch",
    relu_before_resize: bool = True,
    eps: float = 1e-5,
    gather_max: bool = False,
) -> Tensor:
    """Images with their erased class softly removed by the generator's CAM (gradient flows into ``cams``).
    ``relu_before_resize``, ``gather_max``: see :func:`class_activation_mask` (True: the thesis code)."""
    mask = class_activation_mask(cams, erased, tuple(images.shape[-2:]), normalization, relu_before_resize, eps,
                                 gather_max)
    return soft_erase(images, mask.to(images.dtype))


def occse_loss(oc_logits: Tensor, labels: Tensor, erased: Tensor, smoothing: float = 0.0) -> Tensor:
    """``L_cse = l_bce(oc(x * (1 - M_r)), y minus {r})`` (Eq. 6): multilabel soft margin of the OC's logits on
    the erased images against the labels with ``r`` zeroed; label smoothing applies to that target (the
    erased class's target becomes eps/2)."""
    return multilabel_soft_margin(oc_logits, remaining_labels(labels, erased), smoothing=smoothing)
