"""Data for the segmentation stage: images from the data set, masks from ground truth or from a
pseudo-mask artifact folder (`<masks>/<split>/<id>.png` + manifest).

No peeking: with pseudo masks, the validation loader reads the *pseudo* masks of the validation split
(or there is no validation at all when that folder does not exist), never its ground truth; the
checkpoint kept is always the last one (see `wsss.stages.deeplab`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from wsss.artifacts import ArtifactDir, covering_folder, open_split
from wsss.data import transforms as T
from wsss.data.datamodule import WSSSDataModule, collate
from wsss.data.datasets import TransformedSplit
from wsss.data.voc import ImageFolderDataset

log = logging.getLogger(__name__)

GT = "gt"
IGNORE = 255


class PseudoMaskSplit(ImageFolderDataset):
    """A data set split whose masks are read from a folder of palette PNGs instead of its ground truth.

    Images, ids, classes and image-level labels are the wrapped split's.
    """

    def __init__(self, split: ImageFolderDataset, masks_dir: str | Path):
        self.base = split
        self.masks_dir = Path(masks_dir)
        self.ids = list(split.ids)
        self.classes = split.classes
        self.split = getattr(split, "split", None)

    def image_path(self, image_id: str) -> Path:
        return self.base.image_path(image_id)

    def load_image(self, image_id: str) -> np.ndarray:
        return self.base.load_image(image_id)

    def label(self, image_id: str) -> np.ndarray:
        return self.base.label(image_id)

    def mask_path(self, image_id: str) -> Path:
        return self.masks_dir / f"{image_id}.png"

    def load_mask(self, image_id: str) -> np.ndarray:
        mask = super().load_mask(image_id)
        if mask is None:
            raise FileNotFoundError(f"{self.mask_path(image_id)}: pseudo mask of {image_id!r} is missing")
        bad = (mask > self.num_classes) & (mask != IGNORE)
        if bad.any():
            raise ValueError(f"{self.mask_path(image_id)}: mask holds class index {int(mask[bad].max())}; expected "
                             f"0..{self.num_classes} (background + {self.num_classes} classes) or 255")
        return mask


class PredictSamples(Dataset):
    """Full-size images for inference; needs neither masks nor labels (e.g. the VOC test split)."""

    def __init__(self, split: ImageFolderDataset, transform, ids: list[str]):
        self.split, self.transform, self.ids = split, transform, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        image = self.split.load_image(image_id)
        out = self.transform(image=image)
        return {"id": image_id, "image": out["image"], "mask": torch.full(image.shape[:2], IGNORE, dtype=torch.long),
                "label": torch.zeros(self.split.num_classes), "has_mask": False}


def pseudo_mask_folder(masks: str, split: str, dataset_name: str, ids: list[str]) -> ArtifactDir:
    """The finished pseudo masks of `split` under `masks` (`<masks>/<split>/`, or a split holding all its ids)."""
    folder = open_split(masks, split, ids, ".png", dataset_name)
    missing = folder.missing(ids)
    if missing:
        raise FileNotFoundError(f"{folder.root}: {len(missing)} of {len(ids)} pseudo masks are missing, "
                                f"e.g. {missing[:3]}")
    return folder


class SegmentationDataModule(WSSSDataModule):
    """`WSSSDataModule` whose training (and validation) masks come from `masks` (a folder or "gt").

    Args:
        masks: "gt" or a folder holding `<split>/<id>.png` pseudo masks with a manifest.
        train_split: split to train on (default the data set's `train_split`).
        val_split: split to validate on; with pseudo masks its pseudo masks are used, and when the
            folder has no such split there is no validation. None = no validation.
        other arguments: as `WSSSDataModule`.
    """

    def __init__(self, dataset: dict, masks: str, batch_size: int, mean, std, augment: dict | None = None,
                 num_workers: int = 0, train_split: str | None = None, val_split: str | None = None,
                 val_batch_size: int | None = None):
        super().__init__(dataset, batch_size, mean, std, augment, num_workers, val_batch_size)
        if not masks:
            raise ValueError("stage.masks is empty; expected 'gt' or a folder of pseudo masks (<masks>/<split>/*.png)")
        self.masks = str(masks)
        self.train_split = train_split or dataset["train_split"]
        self.val_split = val_split

    @property
    def uses_gt(self) -> bool:
        return self.masks == GT

    def masked_split(self, name: str) -> ImageFolderDataset:
        """Split `name` with the masks training reads: ground truth, or the checked pseudo masks."""
        split = self.split(name)
        if self.uses_gt:
            if not split.has_masks:
                raise FileNotFoundError(f"stage.masks=gt but split {name!r} of {self.cfg['name']!r} has no "
                                        "ground-truth masks")
            return split
        folder = pseudo_mask_folder(self.masks, name, self.cfg["name"], split.ids)
        return PseudoMaskSplit(split, folder.root)

    def has_validation(self) -> bool:
        if not self.val_split:
            return False
        if self.uses_gt:
            return self.split(self.val_split).has_masks
        if (Path(self.masks) / self.val_split).is_dir():
            return True
        try:   # or a folder of another split holding all its ids
            ids = self.split(self.val_split).ids
        except FileNotFoundError:
            return False
        return covering_folder(self.masks, self.val_split, ids, ".png") is not None

    def train_dataloader(self) -> DataLoader:
        split = self.masked_split(self.train_split)
        c = self.cfg
        tf = T.train_transform(c["crop_size"], c["min_size"], c["max_size"], self.mean, self.std, **self.augment)
        ds = TransformedSplit(split, tf)
        drop_last = len(ds) >= 2 * self.batch_size
        return self._loader(ds, self.batch_size, shuffle=True, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        if not self.has_validation():
            log.info("no validation: %s", "stage.val_split is null" if not self.val_split else
                     f"{Path(self.masks) / self.val_split} does not exist")
            return []
        split = self.masked_split(self.val_split)
        tf = T.val_transform(self.cfg["crop_size"], self.mean, self.std)
        return self._loader(TransformedSplit(split, tf), self.val_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Full-size images of this rank's shard of `predict_ids`, one per step (as `WSSSDataModule`)."""
        split = self.split(self.predict_split)
        ids = list(self.predict_ids if self.predict_ids is not None else split.ids)
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        ds = PredictSamples(split, T.eval_transform(self.mean, self.std), ids[rank::world])
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=False)
        return DataLoader(ds, batch_size=1, sampler=sampler, num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())
