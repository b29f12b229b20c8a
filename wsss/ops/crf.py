"""Dense CRF (Krähenbühl & Koltun) over pydensecrf2.

Two flavours are used by the pipeline (lucasdavid/PNOC@f250e0d:tools/ai/demo_utils.py):

* the *label* CRF: unary from an argmax map (`gt_prob` on the given label, the rest spread over the
  others), used for affinity labels (t=10, gt 0.7), RW pseudo masks (t=1, gt 0.9), saliency binarisation;
* the *probability* CRF: unary −log p from class probabilities (softmax / normalised maps), used for
  DeepLab inference (DeepLab-v2 parameter set) and PSA-style la/ha maps.

This module imports only numpy and pydensecrf so that spawned pool workers start quickly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pydensecrf.densecrf as dcrf


@dataclass(frozen=True)
class PairwiseParams:
    """Kernel parameters of the two pairwise potentials (Gaussian smoothness + bilateral appearance)."""

    gaussian_sxy: float
    gaussian_compat: float
    bilateral_sxy: float
    bilateral_srgb: float
    bilateral_compat: float


# IRN / Puzzle-CAM / P-NOC `crf_inference_label`.
LABEL_CRF = PairwiseParams(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=50, bilateral_srgb=5, bilateral_compat=10)
# PSA / OC-CSE / Puzzle-CAM `crf_inference` (softmax unary).
PSA_SOFTMAX_CRF = PairwiseParams(gaussian_sxy=3, gaussian_compat=3, bilateral_sxy=80, bilateral_srgb=13,
                                 bilateral_compat=10)
# P-NOC `crf_inference_dlv2_softmax` (DeepLab-v2 values), used at DeepLab inference.
DEEPLAB_V2_CRF = PairwiseParams(gaussian_sxy=1, gaussian_compat=3, bilateral_sxy=67, bilateral_srgb=3,
                                bilateral_compat=4)

PROB_CLIP = 1e-5


def _check_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != (height, width):
        raise ValueError(f"image has shape {image.shape}; expected ({height}, {width}, 3) matching the maps")
    if image.dtype != np.uint8:
        raise ValueError(f"image has dtype {image.dtype}; expected uint8 RGB")
    # pydensecrf reads the raw buffer: it must be C-contiguous and owned.
    return np.ascontiguousarray(np.copy(image))


def _label_unary(labels: np.ndarray, n_labels: int, gt_prob: float) -> np.ndarray:
    """−log gt_prob on the given label, −log((1 − gt_prob)/(n − 1)) on every other one; (n, H·W)."""
    flat = labels.reshape(-1)
    unary = np.full((n_labels, flat.size), -np.log((1.0 - gt_prob) / (n_labels - 1)), dtype=np.float32)
    unary[flat, np.arange(flat.size)] = -np.log(gt_prob)
    return unary


def _prob_unary(probs: np.ndarray, gt_prob: float | None = None) -> np.ndarray:
    """−log p with p clipped to [1e-5, 1]; (n, H·W). With `gt_prob`, p is first mixed with the uniform
    distribution: gt_prob·p + (1 − gt_prob)/n (pydensecrf's `unary_from_softmax(p, scale=gt_prob)`)."""
    n = probs.shape[0]
    if gt_prob is not None:
        probs = gt_prob * probs + (1.0 - gt_prob) / n
    return -np.log(np.clip(probs, PROB_CLIP, 1.0)).reshape(n, -1).astype(np.float32)


def _inference(image: np.ndarray, unary: np.ndarray, n_labels: int, iterations: int,
               params: PairwiseParams) -> np.ndarray:
    """Mean-field inference; returns the marginals Q as (n, H, W) float32."""
    if iterations < 0:
        raise ValueError(f"iterations={iterations}; expected >= 0")
    height, width = image.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb, rgbim=image,
                             compat=params.bilateral_compat)
    q = crf.inference(iterations)
    return np.asarray(q, dtype=np.float32).reshape(n_labels, height, width)


def crf_probabilities(image: np.ndarray, probs: np.ndarray, iterations: int = 10,
                      params: PairwiseParams = DEEPLAB_V2_CRF, gt_prob: float | None = None) -> np.ndarray:
    """Refine class probabilities with a dense CRF (unary −log p).

    Args:
        image: (H, W, 3) uint8 RGB.
        probs: (n, H, W) probabilities over n labels (each pixel should sum to 1).
        iterations: mean-field iterations.
        params: pairwise kernels; default the DeepLab-v2 set P-NOC uses at segmentation inference.
        gt_prob: None = unary −log p; a value in (0, 1] mixes p with the uniform first (the thesis code's
            `crf_inference(..., gt_prob)`, lucasdavid/PNOC@f250e0d:tools/ai/demo_utils.py:74).

    Returns:
        (n, H, W) float32 marginals; every pixel sums to 1.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f"probs has shape {probs.shape}; expected (n_labels, H, W)")
    n, height, width = probs.shape
    if gt_prob is not None and not 0.0 < gt_prob <= 1.0:
        raise ValueError(f"inference.crf.gt_prob={gt_prob}; expected a value in (0, 1] or null")
    image = _check_image(image, height, width)
    if n == 1:
        return np.ones_like(probs)
    return _inference(image, _prob_unary(probs, gt_prob), n, iterations, params)


def crf_labels(image: np.ndarray, labels: np.ndarray, n_labels: int | None = None, iterations: int = 10,
               gt_prob: float = 0.7, params: PairwiseParams = LABEL_CRF) -> np.ndarray:
    """Refine a label map with a dense CRF whose unary trusts each label with probability `gt_prob`.

    The same as pydensecrf's `unary_from_labels(labels, n, gt_prob, zero_unsure=False)` followed by the
    reference kernels (Gaussian 3/3, bilateral 50/5/10) and an argmax of the marginals.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) integer map with values in [0, n_labels) (indices, not class ids).
        n_labels: number of labels; default `labels.max() + 1`.
        iterations: mean-field iterations (10 for affinity labels, 1 for RW pseudo masks).
        gt_prob: confidence in the given label, in (0, 1).

    Returns:
        (H, W) int64 label map (argmax of the marginals; ties go to the lower index).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels has shape {labels.shape} dtype {labels.dtype}; expected an (H, W) integer map")
    if not 0.0 < gt_prob < 1.0:
        raise ValueError(f"gt_prob={gt_prob}; expected a value in (0, 1)")
    height, width = labels.shape
    image = _check_image(image, height, width)
    labels = labels.astype(np.int64)
    n = int(labels.max()) + 1 if n_labels is None else int(n_labels)
    if labels.min() < 0 or labels.max() >= n:
        raise ValueError(f"labels span [{labels.min()}, {labels.max()}]; expected values in [0, {n})")
    if n == 1:
        return np.zeros_like(labels)
    q = _inference(image, _label_unary(labels, n, gt_prob), n, iterations, params)
    return np.argmax(q, axis=0)


def crf_labels_many(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], n_labels: Sequence[int | None],
                    iterations: int = 10, gt_prob: float = 0.7, params: PairwiseParams = LABEL_CRF,
                    processes: int = 1) -> list[np.ndarray]:
    """`crf_labels` over a list of images, in the ordered process pool (wsss/ops/pool.py) when processes > 1."""
    if not len(images) == len(labels) == len(n_labels):
        raise ValueError(f"got {len(images)} images, {len(labels)} label maps and {len(n_labels)} n_labels; "
                         "expected equal lengths")
    from wsss.ops.pool import pool_imap

    items = enumerate((im, lab, n, iterations, gt_prob, params) for im, lab, n in zip(images, labels, n_labels))
    return [out for _, out in pool_imap(crf_labels, items, processes=processes)]
