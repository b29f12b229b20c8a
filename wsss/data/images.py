"""Decoding an image file into the H×W×3 uint8 RGB array every stage trains on.

`Image.convert("RGB")` alone is wrong for 16-bit grey files (Pillow clips every value above 255,
so a 16-bit PNG becomes nearly all white) and meaningless for float or 32-bit integer images.
What each mode becomes:
- RGB as stored; RGBA, RGBX, LA, PA: the colour channels, alpha dropped (the stored colours are the
  image; compositing onto a background colour would invent one);
- L, 1, P: grey replicated into three channels, bilevel as 0/255, palette indices looked up;
- CMYK, YCbCr: Pillow's conversion (R = (255 - K)(255 - C) / 255, ...);
- 16-bit grey (I;16*, and I from a PNG, which can only be 16-bit): v -> round(v / 257), the linear map
  of 0..65535 onto 0..255, replicated into three channels;
- anything else (F, 32-bit integer I from TIFF, LAB, HSV, ...): refused, naming the file and mode.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CONVERTIBLE = frozenset({"RGB", "RGBA", "RGBX", "L", "LA", "1", "P", "PA", "CMYK", "YCbCr"})
GREY16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def mode_problem(mode: str, fmt: str | None) -> str | None:
    """Why an image of this Pillow mode and format cannot be read as RGB, or None."""
    if mode in CONVERTIBLE or mode in GREY16 or (mode == "I" and fmt == "PNG"):
        return None
    return (f"image mode {mode!r} ({fmt or 'unknown format'}) is not supported; expected an 8-bit RGB, grey, "
            "palette or CMYK image or a 16-bit grey PNG (convert it, e.g. to 8-bit RGB)")


def grey16_to_uint8(values: np.ndarray) -> np.ndarray:
    """0..65535 onto 0..255, rounding to the nearest level (65535 -> 255, 257 -> 1, 128 -> 0)."""
    return (values.astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)


def image_to_rgb(img: Image.Image, path: Path | str) -> np.ndarray:
    problem = mode_problem(img.mode, img.format)
    if problem:
        raise ValueError(f"{path}: {problem}")
    if img.mode in GREY16 or img.mode == "I":
        grey = grey16_to_uint8(np.asarray(img))
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def read_rgb(path: Path | str) -> np.ndarray:
    """The image at `path` as H×W×3 uint8; missing, undecodable or unsupported files name the path."""
    try:
        with Image.open(path) as img:
            return image_to_rgb(img, path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file is missing") from None
    except OSError as e:
        raise OSError(f"{path}: cannot decode image (corrupt or truncated file?): {e}") from None
