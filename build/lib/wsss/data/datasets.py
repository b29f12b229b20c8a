"""Build a data set split from the `dataset` config group and wrap it as a torch Dataset."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from hydra.utils import get_class
from torch.utils.data import Dataset

from wsss.data.voc import ImageFolderDataset


def build_split(dataset_cfg: dict, split: str) -> ImageFolderDataset:
    """`dataset._target_` names the class (or factory); `dataset.args` are its keyword arguments."""
    target = dataset_cfg.get("_target_")
    if not target:
        raise ValueError(f"dataset {dataset_cfg.get('name')!r} has no _target_ naming its loader class")
    factory = get_class(target)
    ds = factory(split=split, **dict(dataset_cfg.get("args") or {}))
    expected = dataset_cfg.get("num_classes")
    if expected is not None and ds.num_classes != expected:
        raise ValueError(f"dataset.num_classes={expected} but {target} split {split!r} has {ds.num_classes} classes")
    return ds


class TransformedSplit(Dataset):
    """Applies an albumentations transform; yields dicts with id, image, label and mask."""

    def __init__(self, split: ImageFolderDataset, transform: Callable | None, ids: list[str] | None = None,
                 require_label: bool = False):
        self.split = split
        self.transform = transform
        self.ids = list(split.ids if ids is None else ids)
        self.require_label = require_label

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image = self.split.load_image(image_id)
        mask = self.split.load_mask(image_id)
        label = self.split.label(image_id)
        if self.require_label and label.sum() == 0:
            raise ValueError(f"image {image_id!r} of split {getattr(self.split, 'split', '?')!r} has an empty label "
                             f"set; a weakly supervised stage needs at least one class per training image")
        if mask is not None and mask.shape != image.shape[:2]:
            raise ValueError(f"{self.split.mask_path(image_id)}: mask is {mask.shape} but image is {image.shape[:2]}")
        has_mask = mask is not None
        if mask is None:
            mask = np.full(image.shape[:2], 255, np.uint8)
        out = self.transform(image=image, mask=mask) if self.transform else {"image": image, "mask": mask}
        return {"id": image_id, "image": out["image"], "mask": torch.as_tensor(out["mask"]).long(),
                "label": torch.from_numpy(label), "has_mask": has_mask}
