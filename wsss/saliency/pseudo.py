"""Pseudo-saliency for the saliency network: threshold + label dense CRF
(lucasdavid/PNOC@f250e0d:scripts/ccam/inference_crf.py).

For an image with at least one class: prepend the constant plane t to the float saliency map and take
the argmax (so a pixel is salient iff s > t, ties go to the background), refine the {0, 1} map with
the 2-label dense CRF (t=10 iterations, gt_prob 0.7, kernels of `crf_labels`) and store 255·label.
An image with no class gets an all-zero map (upstream does the same). The pseudo_saliency task runs
it over a split in the ordered process pool (wsss/fill.py).
"""
from __future__ import annotations

import numpy as np

from wsss.ops.crf import crf_labels

#: C²AM-H binarisation threshold (P-NOC INF_FG_T); the C²AM README uses 0.3.
DEFAULT_THRESHOLD = 0.2


def binarize(saliency: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """(H, W) {0, 1} int64 map: 1 where saliency (in [0, 1]) > threshold."""
    return (np.asarray(saliency) > threshold).astype(np.int64)


def pseudo_saliency_map(image: np.ndarray, saliency: np.ndarray, has_label: bool = True,
                        threshold: float = DEFAULT_THRESHOLD, crf_iterations: int | None = 10,
                        gt_prob: float = 0.7) -> np.ndarray:
    """One pseudo-saliency map, uint8 {0, 255}.

    Args:
        image: (H, W, 3) uint8 RGB.
        saliency: (H, W) float saliency in [0, 1] (the C²AM-H float map, not a uint8 PNG: upstream thresholds
            the float `hr_cam`).
        has_label: False for an image without any class (→ all zeros).
        threshold: foreground iff saliency > threshold.
        crf_iterations: label-CRF mean-field iterations; None or 0 skips the CRF.
        gt_prob: label-CRF confidence in the thresholded label.
    """
    saliency = np.asarray(saliency)
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"saliency map is {saliency.shape} but the image is {image.shape[:2]}")
    if not np.issubdtype(saliency.dtype, np.floating):
        raise ValueError(f"saliency map is {saliency.dtype}; expected a float map in [0, 1] (a uint8 PNG "
                         "moves values across the threshold)")
    if not has_label:
        return np.zeros(saliency.shape, np.uint8)
    labels = binarize(saliency, threshold)
    if crf_iterations:
        labels = crf_labels(image, labels, n_labels=2, iterations=crf_iterations, gt_prob=gt_prob)
    return (labels * 255).astype(np.uint8)
