"""P-OC and P-NOC: generator objective (thesis Eq. 26-27) and the not-so-ordinary classifier's (Eq. 28).

Generator f (CAM generator), with ``noc``/``oc`` fixed:
    ``L_f = L_cls + L_p-cls + lambda_re * L_re + lambda_cse * l(oc(x * (1 - psi(A^r))), y minus {r})``
Ordinary classifier, with f fixed (Algorithm 1, every k_noc steps):
    ``L_noc = lambda_noc * l(oc(x * (1 - [psi(A^r) > delta_noc])), y)``
where the hard mask uses the *detached* CAMs, each normalised by its own maximum, and the target is the
full label set: the classifier must still recognise ``r`` where f's map of ``r`` has been blanked out.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from wsss.losses.classification import multilabel_soft_margin
from wsss.losses.occse import class_activation_mask
from wsss.schedules import linear_ramp


def hard_mask(
    cams: Tensor,
    erased: Tensor,
    size: tuple[int, int],
    threshold: float = 0.2,
    eps: float = 1e-5,
) -> Tensor:
    """Boolean (B, 1, H, W) map of the pixels to erase: ``psi(A^r) > delta_noc`` on detached CAMs.

    ``psi`` is ReLU -> bilinear resize to ``size`` -> division by each image's own maximum + eps (the
    reference hard mask); ``threshold`` is delta_noc (``--oc_train_mask_t``, 0.2). Images with
    ``r = NO_CLASS`` erase nothing. No gradient reaches ``cams``.
    """
    with torch.no_grad():
        normalised = class_activation_mask(
            cams, erased, size, normalization="image", relu_before_resize=True, eps=eps)
    return normalised > threshold


def hard_erase(
    images: Tensor, cams: Tensor, erased: Tensor, threshold: float = 0.2, eps: float = 1e-5
) -> Tensor:
    """``x * (1 - [psi(A^r) > delta_noc])``: erased pixels become 0 (the mean colour).

    Constant with respect to ``cams`` (a thresholded map carries no gradient)."""
    mask = hard_mask(cams, erased, tuple(images.shape[-2:]), threshold, eps)
    return images * (~mask).to(images.dtype)


def noc_loss(oc_logits: Tensor, labels: Tensor, weight: float, smoothing: float = 0.0) -> Tensor:
    """``L_noc = lambda_noc * l(p_noc, y)`` (Eq. 28): the classifier's loss on hard-erased images against the
    full (smoothed) label set, ``r`` included. ``weight`` is lambda_noc (ramped 0 -> 1)."""
    return weight * multilabel_soft_margin(oc_logits, labels, smoothing=smoothing)


def _weighted(term: Tensor | None, weight: float | None, name: str) -> Tensor | float:
    if term is None:
        return 0.0
    if weight is None:
        raise ValueError(f"generator_loss: {name} term given without its weight")
    return weight * term


def generator_loss(
    classification: Tensor,
    *,
    puzzle_classification: Tensor | None = None,
    reconstruction: Tensor | None = None,
    reconstruction_weight: float | None = None,
    cse: Tensor | None = None,
    cse_weight: float | None = None,
) -> Tensor:
    """Total loss of the CAM generator, Eq. 26 (P-OC) / Eq. 27 (P-NOC's ``L_f``):

    ``L = L_cls + L_p-cls + lambda_re * L_re + lambda_cse * L_cse``.

    Terms left as None are absent, so the same function serves Puzzle-CAM (Eq. 5: no ``cse``), OC-CSE
    (Eq. 6: classification + cse only), P-OC and P-NOC. A term given without its weight is an error.
    """
    total = classification
    if puzzle_classification is not None:
        total = total + puzzle_classification
    total = total + _weighted(reconstruction, reconstruction_weight, "reconstruction")
    return total + _weighted(cse, cse_weight, "cse")


class PNOCWeights(NamedTuple):
    """Loss weights at one step: lambda_re (alpha_p), lambda_cse (alpha_o) and lambda_noc (omega)."""

    reconstruction: float
    cse: float
    noc: float


def pnoc_weights(
    step: int,
    total: int,
    reconstruction: tuple[float, float, float] = (0.0, 4.0, 0.5),
    cse: tuple[float, float, float] = (0.3, 1.0, 1.0),
    noc: tuple[float, float, float] = (0.0, 1.0, 1.0),
) -> PNOCWeights:
    """Scheduled weights at micro-step ``step`` of ``total``; each is a (start, end, fraction) ramp of
    :func:`wsss.schedules.linear_ramp`. Defaults are the reference P-NOC runner's (pnoc-spec §6.3):
    alpha_p 0 -> 4 over the first half, alpha_o 0.3 -> 1 and omega 0 -> 1 over the whole run.

    (The original OC-CSE uses a per-epoch lambda = 0.3 + 0.05 * epoch instead; the P-NOC code ramps per step.)
    """
    return PNOCWeights(
        reconstruction=linear_ramp(step, total, *reconstruction),
        cse=linear_ramp(step, total, *cse),
        noc=linear_ramp(step, total, *noc),
    )
