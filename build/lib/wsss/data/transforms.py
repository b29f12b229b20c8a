"""Mask-aware transforms (albumentations) for the three ways a stage reads images.

- `train`: random resize of the long side in [min_size, max_size], horizontal flip, optional
  colour jitter and RandAugment, normalisation, random crop (image padded with 0 after
  normalisation, i.e. the mean colour; mask padded with 255).
- `eval`: the image at its own size, normalised (CAM, saliency and segmentation inference).
- `val`: short side resized to the crop, top-left crop with 255 padding (cheap batched validation).
"""
from __future__ import annotations

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

IGNORE = 255


def rand_augment(n: int = 2, magnitude: int = 10) -> A.BaseCompose:
    """RandAugment: `n` ops drawn from the FixMatch pool, each applied with probability 0.5 at a
    random strength up to `magnitude` (of 10), then a 16×16 cutout (pnoc-spec §3.3)."""
    m = magnitude / 10.0
    pool = [
        A.AutoContrast(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=(-0.9 * m, 0.9 * m), contrast_limit=0.0, p=0.5),
        A.ColorJitter(brightness=0, contrast=0, saturation=(max(0.05, 1 - 0.9 * m), 1 + 0.9 * m), hue=0, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=(-0.9 * m, 0.9 * m), p=0.5),
        A.Equalize(p=0.5),
        A.NoOp(),
        A.Posterize(num_bits=(max(1, int(8 - 4 * m)), 8), p=0.5),
        A.Affine(rotate=(-30 * m, 30 * m), fill=0, fill_mask=IGNORE, p=0.5),
        A.Sharpen(alpha=(0.05, 0.9 * m), p=0.5),
        A.Affine(shear={"x": (-17 * m, 17 * m), "y": 0}, fill=0, fill_mask=IGNORE, p=0.5),
        A.Affine(shear={"x": 0, "y": (-17 * m, 17 * m)}, fill=0, fill_mask=IGNORE, p=0.5),
        A.Solarize(threshold_range=(1 - m, 1.0), p=0.5),
        A.Affine(translate_percent={"x": (-0.3 * m, 0.3 * m), "y": 0}, fill=0, fill_mask=IGNORE, p=0.5),
        A.Affine(translate_percent={"x": 0, "y": (-0.3 * m, 0.3 * m)}, fill=0, fill_mask=IGNORE, p=0.5),
    ]
    cutout = A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 16), hole_width_range=(16, 16),
                             fill=0, fill_mask=IGNORE, p=1.0)
    return A.Sequential([A.SomeOf(pool, n=n, replace=True), cutout])


def normalize(mean, std) -> A.Normalize:
    return A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)


def train_transform(crop_size: int, min_size: int, max_size: int, mean, std, hflip: bool = True,
                    color_jitter: bool = False, randaugment: bool = False, randaugment_n: int = 2,
                    randaugment_m: int = 10) -> A.Compose:
    if min_size > max_size:
        raise ValueError(f"dataset.min_size={min_size} exceeds dataset.max_size={max_size}")
    ops: list = [A.LongestMaxSize(max_size=list(range(min_size, max_size + 1)), interpolation=cv2.INTER_CUBIC,
                                  mask_interpolation=cv2.INTER_NEAREST)]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if color_jitter:
        ops.append(A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, p=1.0))
    if randaugment:
        ops.append(rand_augment(randaugment_n, randaugment_m))
    ops += [
        normalize(mean, std),
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position="random", border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=IGNORE),
        A.RandomCrop(crop_size, crop_size),
        ToTensorV2(),
    ]
    return A.Compose(ops)


def val_transform(crop_size: int, mean, std) -> A.Compose:
    return A.Compose([
        A.SmallestMaxSize(max_size=crop_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST),
        normalize(mean, std),
        A.PadIfNeeded(min_height=crop_size, min_width=crop_size, position="top_left",
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE),
        A.Crop(0, 0, crop_size, crop_size),
        ToTensorV2(),
    ])


def eval_transform(mean, std) -> A.Compose:
    return A.Compose([normalize(mean, std), ToTensorV2()])
