"""Saliency against ground-truth masks, both ways of thesis Table 9
(lucasdavid/PNOC@f250e0d:scripts/ccam/evaluate.py).

* fg/bg mIoU ("eval_mode saliency"): ground truth 0 → background, any class 1..K → foreground,
  255 ignored; the prediction at threshold t is `saliency > t` (constant plane t, background wins
  ties); 2-class mIoU for every t of a sweep, the best reported with its threshold.
* class-aware score with ground-truth classes (Table 9 rows with CAM = "GT"): the saliency decides
  only *where* the foreground is and the ground truth supplies *which* class. A pixel of class c
  predicted salient is labelled c (a hit); a pixel of class c predicted non-salient is labelled
  background (a miss for c, a false positive for background); a background pixel predicted salient
  is labelled with a class of the image's label set — upstream draws one at random; here it counts
  1/|L| towards each class of the set, the expected confusion of that draw, so the score is
  deterministic (an image without any class keeps such pixels as background). (K+1)-class mIoU.
* class-aware score with CAMs (Table 9 rows with a CAM column): the saliency as background cue,
  the background score is 1 − s and each pixel takes the argmax over [1 − s, CAMs of the image's
  classes] (background wins ties; no threshold), (K+1)-class mIoU (CCAM
  `evaluate_using_background_cues.py`).

Confusion matrices come from `wsss.metrics.segmentation`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from wsss.artifacts import ArtifactDir
from wsss.metrics.segmentation import IGNORE, confusion_matrices, confusion_matrix, iou_per_class
from wsss.progress import progress
from wsss.saliency.maps import read_saliency


def default_thresholds() -> list[float]:
    """0.05 … 0.95 step 0.05 (the runner sweeps 0.05 … 0.80; sigmoid maps may peak above)."""
    return [round(0.05 * i, 2) for i in range(1, 20)]


def fg_bg_target(mask: torch.Tensor) -> torch.Tensor:
    """Ground truth (H, W) with 0 = bg, 1..K = classes, 255 = ignore → 0 bg, 1 fg, 255 ignore."""
    mask = mask.long()
    return torch.where(mask == IGNORE, IGNORE, (mask > 0).long())


def salient(saliency: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(T, H, W) bool: saliency (H, W) in [0, 1] > t for each threshold."""
    return saliency[None] > thresholds[:, None, None]


def fgbg_confusions(saliency: torch.Tensor, mask: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(T, 2, 2) confusion matrices of the binarised saliency against the fg/bg ground truth."""
    return confusion_matrices(salient(saliency, thresholds).long(), fg_bg_target(mask), 2)


def class_aware_confusions(saliency: torch.Tensor, mask: torch.Tensor, classes: torch.Tensor,
                           thresholds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(T, K+1, K+1) float64 confusion of the ground-truth-class labelling of the salient pixels.

    Args:
        saliency: (H, W) in [0, 1]. mask: (H, W) ground truth (0 bg, c + 1 class c, 255 ignore).
        classes: 0-based ids of the image's classes (its image-level label set).
        thresholds: (T,). num_classes: K (foreground classes).
    """
    mask = mask.long()
    on = salient(saliency, thresholds)
    preds = torch.where(on, mask.clamp(max=num_classes)[None], 0)  # ignore pixels are dropped anyway
    confusion = confusion_matrices(preds, mask, num_classes + 1).double()
    classes = torch.as_tensor(classes, device=mask.device).long().flatten()
    if classes.numel():
        stray = (on & (mask == 0)[None]).flatten(1).sum(1).double()  # (T,) background pixels called salient
        confusion[:, 0, 0] -= stray
        confusion[:, 0, classes + 1] += stray[:, None] / classes.numel()
    return confusion


def cam_cue_prediction(saliency: torch.Tensor, cams: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(H, W) labels: argmax over [1 − saliency, cams (n, H, W)] → 0 or keys + 1."""
    if cams.shape[0] == 0:
        return torch.zeros(saliency.shape, dtype=torch.long, device=saliency.device)
    scores = torch.cat([(1 - saliency)[None], cams.float()])
    arg = scores.argmax(0)
    labels = torch.cat([torch.zeros(1, dtype=torch.long, device=keys.device), keys.long() + 1])
    return labels[arg]


@dataclass
class SaliencyScores:
    """Scores of one saliency folder on one split (values in [0, 1])."""

    thresholds: list[float]
    fgbg_curve: list[float]
    class_curve: list[float]
    cam_miou: float | None = None
    images: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def fgbg_best(self) -> tuple[float, float]:
        i = int(np.nanargmax(self.fgbg_curve))
        return self.thresholds[i], self.fgbg_curve[i]

    @property
    def class_best(self) -> tuple[float, float]:
        i = int(np.nanargmax(self.class_curve))
        return self.thresholds[i], self.class_curve[i]

    def as_dict(self, prefix: str = "") -> dict:
        (tf, mf), (tc, mc) = self.fgbg_best, self.class_best
        d = {"fgbg_miou": mf, "fgbg_threshold": tf, "fgbg_curve": self.fgbg_curve,
             "class_miou": mc, "class_threshold": tc, "class_curve": self.class_curve,
             "thresholds": self.thresholds, "images": self.images}
        if self.cam_miou is not None:
            d["cam_miou"] = self.cam_miou
        return {f"{prefix}{k}": v for k, v in d.items()}


def evaluate_saliency(dataset, maps: ArtifactDir, thresholds: Sequence[float] | None = None,
                      cam_dir: str | Path | None = None, device: str = "cpu") -> SaliencyScores:
    """Scores of the saliency maps in `maps` (C²AM-H float maps or PNGs, wsss/saliency/maps.py) against the
    masks of `dataset` (images with a mask); the float maps are scored as floats, as the thesis code scores
    the `hr_cam` of its npy files (lucasdavid/PNOC@f250e0d:scripts/ccam/evaluate.py:59-70).

    `cam_dir`: a CAM artifact folder of the same split; when given, the CAM-cue score is computed too.
    """
    thresholds = list(thresholds or default_thresholds())
    ts = torch.tensor(thresholds, device=device)
    k = dataset.num_classes
    cams = ArtifactDir(cam_dir, ".npz") if cam_dir is not None else None
    fgbg = torch.zeros(len(ts), 2, 2, dtype=torch.long, device=device)
    cls = torch.zeros(len(ts), k + 1, k + 1, dtype=torch.float64, device=device)
    cam_conf = torch.zeros(k + 1, k + 1, dtype=torch.long, device=device)
    n = 0
    for image_id in progress(dataset.ids, f"evaluate {maps.root}", total=len(dataset.ids)):
        mask_np = dataset.load_mask(image_id)
        if mask_np is None:
            continue
        unit = read_saliency(maps, image_id)
        if unit.shape != mask_np.shape:
            raise ValueError(f"{maps.path(image_id)}: saliency is {unit.shape} but the mask of {image_id!r} is "
                             f"{mask_np.shape}")
        sal = torch.from_numpy(unit).to(device)
        mask = torch.from_numpy(mask_np.astype(np.int64)).to(device)
        classes = torch.from_numpy(np.flatnonzero(np.asarray(dataset.label(image_id)) > 0.5)).to(device)
        fgbg += fgbg_confusions(sal, mask, ts)
        cls += class_aware_confusions(sal, mask, classes, ts, k)
        if cams is not None:
            z = cams.read_npz(image_id)
            cam_maps = torch.from_numpy(z["cams"].astype(np.float32)).to(device)
            if cam_maps.shape[1:] != mask.shape:
                raise ValueError(f"{cams.path(image_id)}: CAMs are {tuple(cam_maps.shape[1:])} but the mask of "
                                 f"{image_id!r} is {tuple(mask.shape)}")
            pred = cam_cue_prediction(sal, cam_maps, torch.from_numpy(z["keys"]).to(device))
            cam_conf += confusion_matrix(pred, mask, k + 1)
        n += 1
    if n == 0:
        raise ValueError(f"no image of split {getattr(dataset, 'split', '?')!r} has a ground-truth mask")
    fgbg_curve = [float(v) for v in iou_per_class(fgbg).nanmean(-1)]
    class_curve = [float(v) for v in iou_per_class(cls).nanmean(-1)]
    cam_miou = float(iou_per_class(cam_conf).nanmean()) if cams is not None else None
    return SaliencyScores(thresholds, fgbg_curve, class_curve, cam_miou, n)
