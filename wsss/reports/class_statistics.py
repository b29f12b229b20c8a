"""The class statistics of thesis Table 8, computed from a data set's masks and image labels.

For class c, over the images whose label set contains c:
- %S, average relative size: the mean fraction of the image's pixels (all H x W, ignore pixels included)
  that the mask marks as c; for the background, over every image;
- %C, co-occurrence rate: the fraction of those images whose label set has another class too;
- L, average label-set cardinality: the mean number of classes in their label sets.
Each class also gets the thesis's group and size category (Table 8). For the Pascal VOC classes these are
the thesis's own; other classes have no group, and their size category follows %S with the cut points
that reproduce the thesis's categories from its own %S column (small < 11.5 % <= mid < 19 % <= large).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsss.data.ground_truth import ground_truth_mask

# Thesis Table 8: class -> (group, size category).
THESIS_CATEGORIES = {
    "aeroplane": ("singleton", "mid"), "bicycle": ("traffic", "small"), "bird": ("singleton", "mid"),
    "boat": ("p-rel", "small"), "bottle": ("bottle", "small"), "bus": ("traffic", "large"),
    "car": ("traffic", "mid"), "cat": ("singleton", "large"), "chair": ("room", "small"),
    "cow": ("p-rel", "mid"), "diningtable": ("room", "large"), "dog": ("p-rel", "large"),
    "horse": ("p-rel", "large"), "motorbike": ("traffic", "large"), "person": ("person", "mid"),
    "pottedplant": ("room", "small"), "sheep": ("p-rel", "large"), "sofa": ("room", "large"),
    "train": ("p-rel", "large"), "tvmonitor": ("room", "mid"),
}
SIZE_CUTS = (0.115, 0.19)  # relative size: small below the first, large from the second on
SIZES = ("small", "mid", "large")


@dataclass
class ClassStatistics:
    classes: list[str]             # foreground classes, in the data set's order
    background_size: float         # %S of the background (fraction)
    relative_size: np.ndarray      # (K,) %S (fractions); nan for a class no image has
    cooccurrence: np.ndarray       # (K,) %C (fractions)
    cardinality: np.ndarray        # (K,) L
    images: np.ndarray             # (K,) images whose label set has the class

    def group(self, c: int) -> str:
        return THESIS_CATEGORIES.get(self.classes[c], ("-", None))[0]

    def size(self, c: int) -> str:
        known = THESIS_CATEGORIES.get(self.classes[c])
        if known:
            return known[1]
        s = self.relative_size[c]
        return "-" if s != s else SIZES[int(np.searchsorted(SIZE_CUTS, s, side="right"))]


def class_statistics(dataset, ids: list[str] | None = None) -> ClassStatistics:
    """%S, %C and L of every class of `dataset` (an ImageFolderDataset with masks) over `ids` (all by default)."""
    ids = list(dataset.ids if ids is None else ids)
    if not ids:
        raise ValueError("class statistics of an empty split")
    k = dataset.num_classes
    size_sum, card_sum, co_sum, count = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k)
    background = 0.0
    for image_id in ids:
        label = np.asarray(dataset.label(image_id)) > 0.5
        mask = ground_truth_mask(dataset, image_id)
        pixels = np.bincount(mask.ravel(), minlength=256)
        area = float(mask.size)
        background += pixels[0] / area
        present = np.flatnonzero(label)
        n = len(present)
        count[present] += 1
        size_sum[present] += pixels[present + 1] / area
        card_sum[present] += n
        co_sum[present] += n > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return ClassStatistics(list(dataset.classes), background / len(ids), size_sum / count, co_sum / count,
                               card_sum / count, count.astype(int))
