"""Names of the metrics computed while training say which images they were computed on."""
from __future__ import annotations

HELD_OUT = "val/"
INSIDE_TRAINING = "train_subset/"


def validation_prefix(dataset: dict) -> str:
    """`val/` when `dataset.val_split` is held out from training; `train_subset/` when it is the training
    split or one inside it (`dataset.train_subsets`, e.g. VOC's train inside train_aug), as the 2023 recipes
    validated."""
    split = dataset.get("val_split")
    inside = split == dataset.get("train_split") or split in (dataset.get("train_subsets") or [])
    return INSIDE_TRAINING if inside else HELD_OUT
