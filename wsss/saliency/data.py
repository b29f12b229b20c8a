"""Training data of the saliency stages: images with CAM hints (C²AM-H) or pseudo-saliency targets.

* `ccam_train_transform`: the C²AM-H transform (lucasdavid/PNOC@f250e0d:core/datasets/__init__.py,
  get_ccam_transforms): resize to a square of `resize_factor`·crop (bilinear, aspect ratio not kept),
  horizontal flip, normalise, random crop.
  The hint map travels as the albumentations `mask` with bilinear interpolation, so every
  geometric operation (resize, flip, crop, padding with 0) is applied to image and hint alike.
* `HintSplit`: image + label + hint (max over classes of the image's CAMs from a CAM artifact
  folder, zeros where an image has no class).
* `PseudoSaliencySplit`: image + {0, 1} target from a pseudo-saliency PNG folder, carried in the
  `mask` slot (255 = padding, ignored by the loss).
* `full_image_transform` (`stage.train_images=full`): the thesis code's PoolNet input, each image at its own
  size (poolnet/dataset/dataset.py @ f250e0d: no resize, no crop, horizontal flip with p 0.5), one per batch;
  `images_with_min_side` leaves out the small images that code skips (a side <= 100).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from wsss.artifacts import ArtifactDir, open_split
from wsss.data import transforms as T
from wsss.data.datamodule import WSSSDataModule, collate

log = logging.getLogger(__name__)


def ccam_train_transform(crop_size: int, mean, std, resize_factor: float = 1.15, hflip: bool = True) -> A.Compose:
    """Square resize to round(resize_factor·crop) → hflip → normalise → pad (0) → random crop."""
    if resize_factor <= 0:
        raise ValueError(f"resize_factor={resize_factor}; expected > 0")
    side = int(round(resize_factor * crop_size))
    ops: list = [A.Resize(side, side, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_LINEAR)]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    ops += [
        T.normalize(mean, std),
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position="random", border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=0),
        A.RandomCrop(crop_size, crop_size),
        ToTensorV2(),
    ]
    return A.Compose(ops)


def ccam_eval_transform(crop_size: int, mean, std) -> A.Compose:
    """Square resize to the crop (bilinear, image and hint alike) and normalise: the polarity pass."""
    return A.Compose([A.Resize(crop_size, crop_size, interpolation=cv2.INTER_LINEAR,
                               mask_interpolation=cv2.INTER_LINEAR), T.normalize(mean, std), ToTensorV2()])


def full_image_transform(mean, std, hflip: bool = True) -> A.Compose:
    """hflip (p 0.5, image and target alike) → normalise: the image keeps its own size."""
    return A.Compose([*([A.HorizontalFlip(p=0.5)] if hflip else []), T.normalize(mean, std), ToTensorV2()])


def images_with_min_side(split, ids: list[str], min_side: int) -> list[str]:
    """The ids whose image is at least `min_side` pixels high and wide (sizes from the file headers)."""
    if min_side <= 0:
        return list(ids)
    kept = []
    for image_id in ids:
        with Image.open(split.image_path(image_id)) as img:
            if min(img.size) >= min_side:
                kept.append(image_id)
    return kept


def load_hint(cams: ArtifactDir, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 hint: max over the image's class maps (zeros when it has none)."""
    z = cams.read_npz(image_id)
    maps = z.get("cams")
    if maps is None or maps.ndim != 3:
        raise ValueError(f"{cams.path(image_id)}: expected an array `cams` of shape (n, H, W)")
    if maps.shape[0] == 0:
        return np.zeros(shape, np.float32)
    if maps.shape[1:] != tuple(shape):
        raise ValueError(f"{cams.path(image_id)}: CAMs are {maps.shape[1:]} but image {image_id!r} is {tuple(shape)}")
    return maps.astype(np.float32).max(0)


class HintSplit(Dataset):
    """Items: id, image, label, hint (H, W) float, mask (all 255: no ground truth is read), has_mask False."""

    def __init__(self, split, cams: ArtifactDir | None, transform: Callable, ids: list[str]):
        self.split, self.cams, self.transform, self.ids = split, cams, transform, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image = self.split.load_image(image_id)
        hint = (load_hint(self.cams, image_id, image.shape[:2]) if self.cams is not None
                else np.zeros(image.shape[:2], np.float32))
        out = self.transform(image=image, mask=hint)
        hint_t = torch.as_tensor(out["mask"]).float()
        return {"id": image_id, "image": out["image"], "hint": hint_t,
                "mask": torch.full(hint_t.shape, 255, dtype=torch.long),
                "label": torch.from_numpy(self.split.label(image_id)), "has_mask": False}


def collate_hints(items: list[dict]) -> dict:
    out = collate(items)
    out["hint"] = torch.stack([it["hint"] for it in items])
    return out


class PseudoSaliencySplit(Dataset):
    """Items: id, image, mask = pseudo-saliency target in {0, 1} (255 = padding), label, has_mask True."""

    def __init__(self, split, targets: ArtifactDir, transform: Callable, ids: list[str]):
        self.split, self.targets, self.transform, self.ids = split, targets, transform, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image = self.split.load_image(image_id)
        png = self.targets.read_png(image_id)
        if png.shape != image.shape[:2]:
            raise ValueError(f"{self.targets.path(image_id)}: pseudo-saliency is {png.shape} but the image is "
                             f"{image.shape[:2]}")
        target = (png > 127).astype(np.uint8)
        out = self.transform(image=image, mask=target)
        return {"id": image_id, "image": out["image"], "mask": torch.as_tensor(out["mask"]).long(),
                "label": torch.from_numpy(self.split.label(image_id)), "has_mask": True}


def checked_artifacts(folder: str, suffix: str, dataset: str, split: str, ids: list[str]) -> ArtifactDir:
    """The finished artifacts of `split` under `folder` (`<folder>/<split>/`, or a split holding all its ids)."""
    return open_split(folder, split, ids, suffix, dataset)


def check_train_images(mode: str, train_images: str, batch_size: int) -> None:
    if train_images not in ("crop", "full"):
        raise ValueError(f"stage.train_images={train_images!r}; expected 'crop' or 'full'")
    if train_images == "full" and mode != "pseudo_saliency":
        raise ValueError("stage.train_images=full is the loader of the saliency stage (PoolNet) only")
    if train_images == "full" and batch_size != 1:
        raise ValueError(f"stage.train_images=full trains on each image at its own size, so images of "
                         f"different sizes cannot be stacked: stage.batch_size={batch_size}; expected 1 (the "
                         f"thesis code: batch 1, iter_size 10 = trainer.accumulate_grad_batches=10), "
                         f"or stage.train_images=crop")


class SaliencyDataModule(WSSSDataModule):
    """WSSSDataModule whose train loader reads hints (C²AM) or pseudo-saliency targets (PoolNet).

    Args (besides WSSSDataModule's):
        mode: "hints" (C²AM / C²AM-H) or "pseudo_saliency" (saliency network).
        inputs: folder holding `<split>/` artifact folders (CAMs or pseudo-saliency); None = no hints.
        crop_size, resize_factor: of `ccam_train_transform` (hints mode).
        train_images (pseudo_saliency mode): "crop" (random rescale to dataset.min_size..max_size, then a
            crop_size crop; any batch size) or "full" (each image at its own size, batch 1: the thesis code).
        full_image_min_side: with "full", images with a side below this are left out (0 keeps all).
    """

    def __init__(self, dataset: dict, batch_size: int, mean, std, mode: str, inputs: str | None,
                 crop_size: int | None = None, resize_factor: float = 1.15,
                 augment: dict | None = None, num_workers: int = 0, train_images: str = "crop",
                 full_image_min_side: int = 0):
        super().__init__(dataset, batch_size, mean, std, augment=augment, num_workers=num_workers)
        if mode not in ("hints", "pseudo_saliency"):
            raise ValueError(f"mode={mode!r}; expected 'hints' or 'pseudo_saliency'")
        check_train_images(mode, train_images, batch_size)
        self.mode, self.inputs = mode, inputs
        self.train_images, self.full_image_min_side = train_images, int(full_image_min_side)
        self.crop_size = int(crop_size or dataset["crop_size"])
        self.resize_factor = resize_factor

    def full_image_ids(self, split, ids: list[str]) -> list[str]:
        kept = images_with_min_side(split, ids, self.full_image_min_side)
        if not kept:
            raise ValueError(f"no image of split {self.cfg['train_split']!r} is at least "
                             f"stage.full_image_min_side={self.full_image_min_side} pixels high and wide")
        if len(kept) < len(ids):
            log.warning("%d images of split %r have a side below stage.full_image_min_side=%d and are left "
                        "out of training", len(ids) - len(kept), self.cfg["train_split"],
                        self.full_image_min_side)
        return kept

    def train_ids(self, split) -> list[str]:
        ids = [i for i in split.ids if split.label(i).sum() > 0]
        if not ids:
            raise ValueError(f"split {self.cfg['train_split']!r} has no image with a label")
        if len(ids) < len(split.ids):
            log.warning("%d images of split %r have no label and are left out of training",
                        len(split.ids) - len(ids), self.cfg["train_split"])
        return ids

    def hint_artifacts(self) -> ArtifactDir | None:
        name = self.cfg["train_split"]
        if not self.inputs:
            return None
        return checked_artifacts(self.inputs, ".npz", self.cfg["name"], name, self.split(name).ids)

    def polarity_dataloader(self, max_images: int | None = None, rank: int = 0, world: int = 1) -> DataLoader:
        """This rank's shard of the first `max_images` labelled training images, un-augmented, with hints."""
        split = self.split(self.cfg["train_split"])
        ids = self.train_ids(split)[:max_images][rank::world]
        ds = HintSplit(split, self.hint_artifacts(), ccam_eval_transform(self.crop_size, self.mean, self.std), ids)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=0, collate_fn=collate_hints)

    def train_dataloader(self) -> DataLoader:
        name = self.cfg["train_split"]
        split = self.split(name)
        ids = self.train_ids(split)
        hflip = self.augment.get("hflip", True)
        if self.mode == "hints":
            tf = ccam_train_transform(self.crop_size, self.mean, self.std, self.resize_factor, hflip)
            ds: Dataset = HintSplit(split, self.hint_artifacts(), tf, ids)
            collate_fn = collate_hints
        else:
            targets = checked_artifacts(self.inputs, ".png", self.cfg["name"], name, split.ids)
            c = self.cfg
            if self.train_images == "full":
                tf = full_image_transform(self.mean, self.std, hflip)
                ids = self.full_image_ids(split, ids)
            else:
                tf = T.train_transform(self.crop_size, c["min_size"], c["max_size"], self.mean, self.std,
                                       hflip=hflip)
            ds, collate_fn = PseudoSaliencySplit(split, targets, tf, ids), collate
        return self._loader(ds, self.batch_size, shuffle=True, drop_last=len(ds) >= 2 * self.batch_size,
                            collate_fn=collate_fn)
