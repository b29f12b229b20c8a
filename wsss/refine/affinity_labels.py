"""Affinity labels: confident foreground / background / unsure pixels from CAMs (+ saliency) and dense CRF.

Thesis §B.2.2 ("Guiding Random Walk using Saliency Maps"): the background of the affinity labels comes
from the C²AM-H / PoolNet saliency instead of a low CAM threshold. Reference:
lucasdavid/PNOC@f250e0d:scripts/rw/make_affinity_labels.py; without saliency,
jiwoon-ahn/irn@a2ece00:step/cam_to_ir_label.py.

Output convention: (H, W) uint8, 0 = background, c + 1 = foreground class c, 255 = unsure (ignored by
the pair labels). Maps are at image resolution; the affinity stage downsamples them to stride 4.

Numpy only (no torch), so the pool workers of `wsss.fill.fill(..., affinity_labels, processes=N)` start
quickly.
"""
from __future__ import annotations

import numpy as np

from wsss.ops.crf import crf_labels

IGNORE_INDEX = 255


def unit_saliency(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Saliency (H, W) as float32 in [0, 1]: uint8 maps are divided by 255, float maps must lie in [0, 1]."""
    saliency = np.asarray(saliency)
    if saliency.shape != tuple(shape):
        raise ValueError(f"saliency has shape {saliency.shape}; expected {tuple(shape)}")
    if saliency.dtype == np.uint8:
        return saliency.astype(np.float32) / 255.0
    saliency = saliency.astype(np.float32)
    if saliency.min() < 0 or saliency.max() > 1:
        raise ValueError(f"float saliency spans [{saliency.min()}, {saliency.max()}]; expected [0, 1] (or uint8)")
    return saliency


def threshold_argmax(cams: np.ndarray, threshold: float) -> np.ndarray:
    """argmax over [threshold plane, cams]: 0 where every CAM ≤ threshold (ties go to background), else 1 + c."""
    if cams.shape[0] == 0:
        return np.zeros(cams.shape[1:], np.int64)
    best = cams.argmax(axis=0)
    return np.where(cams.max(axis=0) > threshold, best + 1, 0).astype(np.int64)


def _refine(image: np.ndarray, labels: np.ndarray, n_labels: int, iterations: int, gt_prob: float) -> np.ndarray:
    if iterations == 0:
        return labels
    return crf_labels(image, labels, n_labels=n_labels, iterations=iterations, gt_prob=gt_prob)


def affinity_labels(cams: np.ndarray, class_ids: np.ndarray, image: np.ndarray, saliency: np.ndarray | None = None,
                    fg_threshold: float = 0.40, bg_threshold: float = 0.10, crf_iterations: int = 10,
                    gt_prob: float = 0.7) -> np.ndarray:
    """Affinity label map of one image.

    Args:
        cams: (n, H, W) max-normalised CAMs of the n present classes, in [0, 1].
        class_ids: (n,) 0-based foreground class ids of those CAMs.
        image: (H, W, 3) uint8 RGB (the CRF's appearance kernel).
        saliency: optional (H, W) saliency, uint8 0..255 or float in [0, 1].
        fg_threshold: δ_fg, a class is a foreground candidate where its CAM > δ_fg (0.40, P-NOC runner).
        bg_threshold: with saliency, pixels with saliency ≤ δ_bg are background candidates (0.10); without,
            pixels whose CAMs are all ≤ δ_bg are (IRN's low threshold; P-NOC/Puzzle runners use 0.10).
        crf_iterations: label-CRF iterations (10); 0 disables the CRF.
        gt_prob: label-CRF confidence (0.7).

    With saliency: salient = CRF(saliency > δ_bg); fg = CRF(argmax[δ_fg, cams] inside the salient
    region); label = fg class where fg says so, else 0 where not salient, else 255.
    Without: fg = CRF(argmax[δ_fg, cams]), bg = CRF(argmax[δ_bg, cams]); label = fg class where fg says so,
    else 0 where bg says background too, else 255.
    """
    cams = np.asarray(cams, dtype=np.float32)
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    if cams.ndim != 3 or cams.shape[0] != class_ids.size:
        raise ValueError(f"cams have shape {cams.shape} for {class_ids.size} class ids; expected (n_classes, H, W)")
    if image.shape[:2] != cams.shape[1:]:
        raise ValueError(f"image has shape {image.shape}; expected (H, W) = {cams.shape[1:]} like the cams")
    n_labels = class_ids.size + 1
    keys = np.concatenate([[0], class_ids + 1])

    if saliency is None:
        foreground = _refine(image, threshold_argmax(cams, fg_threshold), n_labels, crf_iterations, gt_prob)
        background = _refine(image, threshold_argmax(cams, bg_threshold), n_labels, crf_iterations, gt_prob) == 0
    else:
        salient = (unit_saliency(saliency, cams.shape[1:]) > bg_threshold).astype(np.int64)
        salient = _refine(image, salient, 2, crf_iterations, gt_prob)
        foreground = threshold_argmax(cams, fg_threshold) * salient
        foreground = _refine(image, foreground, n_labels, crf_iterations, gt_prob)
        background = salient == 0
    return combine_labels(keys[foreground], background)


def combine_labels(foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """fg class id where `foreground` > 0; else 0 where `background`; else 255 (IRN / P-NOC rule, check A5)."""
    labels = np.where(foreground > 0, foreground, np.where(background, 0, IGNORE_INDEX))
    return labels.astype(np.uint8)
