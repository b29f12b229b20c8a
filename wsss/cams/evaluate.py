"""Background-threshold sweep of CAM artifacts against ground-truth masks.

For each threshold t the prediction is the argmax over [t, CAMs of the present classes]
(background wins ties, lucasdavid/PNOC@f250e0d:scripts/evaluate.py); the confusion matrices of all thresholds
of an image are accumulated in one bincount on the device. Optional dense CRF refinement of each thresholded
map runs in a process pool.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wsss.artifacts import ArtifactDir
from wsss.data.ground_truth import ground_truth_mask
from wsss.learned import all_background_miou
from wsss.metrics.segmentation import IGNORE, check_range, confusion_matrices, iou_per_class
from wsss.progress import progress

log = logging.getLogger(__name__)


def default_thresholds() -> list[float]:
    return [round(0.05 * i, 2) for i in range(1, 17)]  # 0.05 … 0.80


def threshold_predictions(cams: torch.Tensor, keys: torch.Tensor, thresholds: torch.Tensor,
                          shape: tuple[int, int]) -> torch.Tensor:
    """(T, H, W) segmentation label maps (0 = background, c + 1 = class c) for every threshold."""
    if cams.shape[0] == 0:
        return torch.zeros((len(thresholds), *shape), dtype=torch.long, device=thresholds.device)
    score, arg = cams.float().max(0)
    fg = keys.long()[arg] + 1
    return torch.where(score[None] > thresholds[:, None, None], fg[None], torch.zeros_like(fg)[None])


def threshold_confusions(cams: torch.Tensor, keys: torch.Tensor, thresholds: torch.Tensor, mask: torch.Tensor,
                         num_labels: int) -> torch.Tensor:
    """(T, K, K) confusion matrices of `threshold_predictions` at every threshold, from one bincount of the
    pixels rather than one of T maps: a pixel is foreground at the thresholds below its top score, so counting
    (ground truth, top class, how many thresholds lie below the score) and summing over the last gives every
    threshold's matrix. Counts equal `confusion_matrices(threshold_predictions(...), mask, num_labels)`."""
    valid = mask != IGNORE
    target = mask[valid].long()
    check_range(target, num_labels, "the ground truth")
    order = torch.argsort(thresholds)
    levels = len(thresholds) + 1
    if cams.shape[0] == 0:
        fg = level = torch.zeros_like(target)
    else:
        score, arg = cams.float().max(0)
        fg = keys.long()[arg][valid] + 1
        check_range(fg, num_labels, "the prediction")
        # how many thresholds lie strictly below each score
        level = torch.searchsorted(thresholds[order].contiguous(), score[valid].contiguous())
    index = (target * num_labels + fg) * levels + level
    hist = torch.bincount(index, minlength=num_labels * num_labels * levels)
    hist = hist.view(num_labels, num_labels, levels)
    at_or_above = hist.flip(-1).cumsum(-1).flip(-1)           # [..., j]: pixels with level >= j
    confusion = at_or_above[..., 1:].permute(2, 0, 1).clone()  # threshold i (sorted): level > i is foreground
    confusion[..., 0] += hist.sum((1, 2))[None] - confusion.sum(-1)
    return confusion[torch.argsort(order)]


class _CAMPairs(Dataset):
    def __init__(self, dataset, cams: ArtifactDir, with_image: bool, key: str = "cams"):
        self.dataset, self.cams, self.with_image, self.key = dataset, cams, with_image, key

    def __len__(self):
        return len(self.dataset.ids)

    def __getitem__(self, i):
        image_id = self.dataset.ids[i]
        mask = ground_truth_mask(self.dataset, image_id)
        z = self.cams.read_npz(image_id)
        if self.key not in z:
            raise KeyError(f"{self.cams.path(image_id)}: no array {self.key!r} (has {sorted(z)})")
        cams = z[self.key]
        if cams.shape[1:] != mask.shape:
            raise ValueError(f"{self.cams.path(image_id)}: CAMs are {cams.shape[1:]} but the mask of {image_id!r} is "
                             f"{mask.shape}")
        image = self.dataset.load_image(image_id) if self.with_image else np.zeros(0, np.uint8)
        # As stored: the counting converts (torch turns float16 into float32 ~20x faster than numpy), and a
        # uint8 mask is an eighth of the memory traffic of int64.
        if mask.dtype != np.uint8:
            mask = mask.astype(np.int64)
        return image_id, torch.from_numpy(cams), torch.from_numpy(z["keys"]), torch.from_numpy(mask), image


@dataclass
class SweepResult:
    thresholds: list[float]
    miou: list[float]
    best_threshold: float
    best_miou: float
    iou: list[float]           # per class at the best threshold
    classes: list[str]
    images: int = 0            # images scored, and their ground-truth pixels (void aside)
    pixels: int = 0
    background_miou: float = float("nan")  # predicting background everywhere, on the same pixels

    def as_dict(self, prefix: str = "") -> dict:
        d = {"thresholds": self.thresholds, "miou_curve": self.miou, "best_threshold": self.best_threshold,
             "miou": self.best_miou, "iou": dict(zip(self.classes, self.iou)), "images": self.images,
             "pixels": self.pixels}
        return {f"{prefix}{k}": v for k, v in d.items()}


def sweep(dataset, cam_dir: str | Path, thresholds: Sequence[float] | None = None, crf: dict | None = None,
          device: str = "cpu", num_workers: int = 0, key: str = "cams") -> SweepResult:
    """`key` names the (n, H, W) maps in each npz: `cams`, or `rw` for random-walk maps."""
    thresholds = list(thresholds or default_thresholds())
    num_labels = dataset.num_classes + 1
    ts = torch.tensor(thresholds, device=device)
    cams = ArtifactDir(cam_dir, ".npz")
    loader = DataLoader(_CAMPairs(dataset, cams, with_image=bool(crf), key=key), batch_size=None, num_workers=num_workers)
    confusion = torch.zeros(len(ts), num_labels, num_labels, dtype=torch.long, device=device)
    refine = _crf_refiner(crf) if crf else None
    images = 0
    pairs = progress(loader, f"threshold sweep {cams.root}", total=len(loader.dataset))
    for image_id, maps, keys, mask, image in pairs:
        images += 1
        maps, keys, mask = maps.to(device), keys.to(device), mask.to(device)
        try:
            if refine is None:
                confusion += threshold_confusions(maps, keys, ts, mask, num_labels)
            else:
                preds = threshold_predictions(maps, keys, ts, tuple(mask.shape))
                preds = torch.from_numpy(refine(image, preds.cpu().numpy(), num_labels)).to(device)
                confusion += confusion_matrices(preds, mask, num_labels)
        except ValueError as e:  # e.g. CAMs made for another class list
            raise ValueError(f"{cams.root}/{image_id}.npz against {dataset.mask_path(image_id)}: {e}") from None
    ious = iou_per_class(confusion)
    curve = ious.nanmean(-1)
    best = int(curve.argmax())
    classes = ["background", *dataset.classes]
    return SweepResult(thresholds, [float(v) for v in curve], thresholds[best], float(curve[best]),
                       [float(v) for v in ious[best]], classes, images, int(confusion[best].sum()),
                       all_background_miou(confusion[best].cpu()))


def _crf_refiner(crf: dict):
    """Label-unary dense CRF of every thresholded map (lucasdavid/PNOC@f250e0d:scripts/evaluate.py: `t`
    iterations, `gt_prob`)."""
    from wsss.ops.crf import crf_labels  # heavy optional dependency, imported on demand

    iterations, gt_prob = int(crf.get("t", 10)), float(crf.get("gt_prob", 0.7))

    def refine(image, preds, num_labels):
        image = np.ascontiguousarray(np.asarray(image))
        return np.stack([crf_labels(image, p, num_labels, iterations=iterations, gt_prob=gt_prob) for p in preds])

    return refine


def plot_curve(results: dict[str, SweepResult], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for name, r in results.items():
        ax.plot(r.thresholds, [100 * m for m in r.miou], marker="o", ms=3, label=f"{name} (best {100 * r.best_miou:.1f}"
                f" @ {r.best_threshold:.2f})")
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
