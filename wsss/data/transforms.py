"""Mask-aware transforms (albumentations) for the three ways a stage reads images.

- `train`: random resize of the long side in [min_size, max_size] (`resize`: cv2 bicubic, or PIL bicubic as
  the thesis code, which antialiases when it shrinks), horizontal flip, optional
  colour jitter and RandAugment, normalisation, random crop (image padded with 0 after
  normalisation, i.e. the mean colour; mask padded with 255).
- `eval`: the image at its own size, normalised (CAM, saliency and segmentation inference).
- `val`: short side resized to the crop, top-left crop with 255 padding (cheap batched validation).
"""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2
from PIL import Image, ImageEnhance, ImageOps

IGNORE = 255
TRAIN_RESIZES = ("cv2_cubic", "pil_bicubic")


RANDAUGMENT_OPS = ("autocontrast", "brightness", "color", "contrast", "equalize", "identity", "posterize",
                   "rotate", "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y")
"""The FixMatch pool (`fixmatch_augment_pool` of the thesis code's tools/ai/randaugment.py)."""


def enhance_factor(v: int) -> float:
    """PIL enhance factor of brightness / colour / contrast / sharpness at strength v: ``v * 0.9 / 10 + 0.05``.
    For v in 1..9 it lies in 0.14..0.86 (< 1): these ops only darken, desaturate, flatten or blur."""
    return v * 0.9 / 10 + 0.05


def posterize_bits(v: int) -> int:
    return int(v * 4 / 10) + 4


def solarize_threshold(v: int) -> int:
    return 256 - int(v * 256 / 10)


def _affine(image: Image.Image, coefficients: tuple, fill: int) -> Image.Image:
    return image.transform(image.size, Image.AFFINE, coefficients, resample=Image.NEAREST,
                           fillcolor=fill if image.mode == "L" else (fill,) * len(image.getbands()))


def apply_op(name: str, image: Image.Image, v: int, sign: int = 1, fill: int = 0,
             geometric_only: bool = False) -> Image.Image:
    """One RandAugment op at strength v (1..9) on a PIL image, as the thesis code (FixMatch's RandAugmentMC).

    ``sign`` (+-1) is the random direction of rotate / shear / translate. ``geometric_only`` applies only the
    ops that move pixels (for masks: the photometric ones leave a mask alone); ``fill`` fills uncovered
    pixels (0 = black for images, the ignore index for masks)."""
    if name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        if name == "rotate":
            return image.rotate(sign * int(v * 30 / 10), resample=Image.NEAREST,
                                fillcolor=fill if image.mode == "L" else (fill,) * len(image.getbands()))
        if name.startswith("shear"):
            k = sign * v * 0.3 / 10
            return _affine(image, (1, k, 0, 0, 1, 0) if name == "shear_x" else (1, 0, 0, k, 1, 0), fill)
        shift = sign * v * 0.3 / 10
        if name == "translate_x":
            return _affine(image, (1, 0, int(shift * image.size[0]), 0, 1, 0), fill)
        return _affine(image, (1, 0, 0, 0, 1, int(shift * image.size[1])), fill)
    if geometric_only or name == "identity":
        return image
    if name == "autocontrast":
        return ImageOps.autocontrast(image)
    if name == "equalize":
        return ImageOps.equalize(image)
    if name == "posterize":
        return ImageOps.posterize(image, posterize_bits(v))
    if name == "solarize":
        return ImageOps.solarize(image, solarize_threshold(v))
    enhancers = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
                 "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}
    if name not in enhancers:
        raise ValueError(f"unknown RandAugment op {name!r}; expected one of {RANDAUGMENT_OPS}")
    return enhancers[name](image).enhance(enhance_factor(v))


class RandAugment(A.DualTransform):
    """RandAugment as the thesis code's `RandAugmentMC(n=2, m=10)`: `n` ops drawn with
    replacement from :data:`RANDAUGMENT_OPS`, each applied with probability 0.5 at a strength v drawn
    uniformly in 1..m-1, then one black cutout (its centre uniform over the image, clipped at the border):
    the box (x0, y0, x0 + 16, y0 + 16) filled with both corners included, as PIL's `ImageDraw.rectangle`
    upstream (lucasdavid/PNOC@f250e0d:tools/ai/randaugment.py:47-65), so 17 x 17 pixels inside the image.
    Masks follow the geometric ops (nearest, uncovered pixels and the cutout -> ignore)."""

    def __init__(self, n: int = 2, magnitude: int = 10, cutout: int = 16, p: float = 1.0):
        super().__init__(p=p)
        if n < 1 or not 2 <= magnitude <= 10:
            raise ValueError(f"randaugment_n={n}, randaugment_m={magnitude}: expected n >= 1 and 2 <= m <= 10")
        self.n, self.magnitude, self.cutout = n, magnitude, cutout

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        rng = self.py_random
        height, width = params["shape"][:2]
        ops = []
        for name in rng.choices(RANDAUGMENT_OPS, k=self.n):
            v = rng.randint(1, self.magnitude - 1)
            sign = -1 if rng.random() < 0.5 else 1
            if rng.random() < 0.5:
                ops.append((name, v, sign))
        x0 = int(max(0, rng.uniform(0, width) - self.cutout / 2))
        y0 = int(max(0, rng.uniform(0, height) - self.cutout / 2))
        return {"ops": ops, "box": (x0, y0, min(width, x0 + self.cutout), min(height, y0 + self.cutout))}

    def _run(self, array, ops, box, fill: int, geometric_only: bool):
        image = Image.fromarray(array)
        for name, v, sign in ops:
            image = apply_op(name, image, v, sign, fill, geometric_only)
        out = np.array(image)
        if box is not None:
            x0, y0, x1, y1 = box
            out[y0:y1 + 1, x0:x1 + 1] = fill   # corners included, as PIL's rectangle (slicing clips at the border)
        return out

    def apply(self, img, ops=(), box=None, **params):
        if img.dtype != np.uint8:
            raise ValueError(f"RandAugment expects uint8 images before normalisation, got {img.dtype}")
        return self._run(img, ops, box, 0, False)

    def apply_to_mask(self, mask, ops=(), box=None, **params):
        return self._run(mask, ops, box, IGNORE, True)

    def get_transform_init_args_names(self):
        return ("n", "magnitude", "cutout")


class PILLongestSideResize(A.DualTransform):
    """The long side to a size drawn uniformly in [min_size, max_size], aspect kept (sides rounded), with
    PIL's BICUBIC on the image (its filter widened by the scale when shrinking, i.e. antialiased) and PIL's
    NEAREST on the mask: the thesis code's `RandomResize` / `RandomResize_For_Segmentation`
    (lucasdavid/PNOC@f250e0d:tools/ai/augment_utils.py). cv2's INTER_CUBIC samples 4×4 source pixels whatever
    the scale (aliasing)."""

    def __init__(self, min_size: int, max_size: int, p: float = 1.0):
        super().__init__(p=p)
        self.min_size, self.max_size = min_size, max_size

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        height, width = params["shape"][:2]
        scale = self.py_random.randint(self.min_size, self.max_size) / max(height, width)
        return {"size": (int(round(height * scale)), int(round(width * scale)))}

    @staticmethod
    def _resize(array: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
        if array.shape[:2] == tuple(size):
            return array
        return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))

    def apply(self, img, size=(0, 0), **params):
        if img.dtype != np.uint8:
            raise ValueError(f"stage.augment.resize=pil_bicubic expects uint8 images, got {img.dtype}")
        return self._resize(img, size, Image.BICUBIC)

    def apply_to_mask(self, mask, size=(0, 0), **params):
        return self._resize(mask, size, Image.NEAREST)

    def get_transform_init_args_names(self):
        return ("min_size", "max_size")


def longest_side_resize(min_size: int, max_size: int, resize: str) -> A.BasicTransform:
    """The train transforms' random long-side resize in [min_size, max_size] (`resize`: TRAIN_RESIZES)."""
    if resize == "pil_bicubic":
        return PILLongestSideResize(min_size, max_size)
    if resize == "cv2_cubic":
        return A.LongestMaxSize(max_size=list(range(min_size, max_size + 1)), interpolation=cv2.INTER_CUBIC,
                                mask_interpolation=cv2.INTER_NEAREST)
    raise ValueError(f"stage.augment.resize={resize!r}; expected one of {TRAIN_RESIZES}")


def normalize(mean, std) -> A.Normalize:
    return A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)


def train_transform(crop_size: int, min_size: int, max_size: int, mean, std, hflip: bool = True,
                    color_jitter: bool = False, randaugment: bool = False, randaugment_n: int = 2,
                    randaugment_m: int = 10, resize: str = "cv2_cubic") -> A.Compose:
    if min_size > max_size:
        raise ValueError(f"dataset.min_size={min_size} exceeds dataset.max_size={max_size}")
    ops: list = [longest_side_resize(min_size, max_size, resize)]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if color_jitter:
        ops.append(A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, p=1.0))
    if randaugment:
        ops.append(RandAugment(randaugment_n, randaugment_m))
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
