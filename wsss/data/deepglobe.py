"""DeepGlobe 2018 land cover in its released layout: `<id>_sat.jpg` + RGB `<id>_mask.png`.

Layout under `root`: the challenge's `train/` folder (803 labelled 2448² tiles; `valid/` and `test/`
have no masks) holding `<id>_sat.jpg` and `<id>_mask.png`. Masks are RGB, one colour per class:

    urban_land (0,255,255)  agriculture_land (255,255,0)  rangeland (255,0,255)  forest_land (0,255,0)
    water (0,0,255)         barren_land (255,255,255)     unknown (0,0,0)

Each channel is binarised at `threshold` (128) before the colour lookup, since the released masks are
not exactly 0/255 everywhere; the one binary colour that is no class, red (255,0,0), becomes 255.

Classes: agriculture_land is the background (mask index 0) as in P-NOC
(lucasdavid/PNOC@6c8950a:datasets/deepglobe.py), leaving 6 foreground classes (urban, rangeland, forest,
water, barren, unknown → mask indices 1..6); `background: null` makes all 7 classes foreground. `ignore` lists
classes mapped to 255 and dropped from the labels. Image-level labels are the classes present in the mask (at
least `min_pixels`).

Splits: `<root>/<splits_dir>/<split>.txt` (one id per line) when present, e.g. P-NOC's `train75`
(602) / `test` (199); otherwise a seeded partition (`seeded_split`, default 75 % train / 25 % test).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from wsss.data.planet import seeded_split
from wsss.data.voc import ImageFolderDataset, read_split

#: the classes in the challenge's order, with their mask colours
DEEPGLOBE_COLORS: dict[str, tuple[int, int, int]] = {
    "urban_land": (0, 255, 255),
    "agriculture_land": (255, 255, 0),
    "rangeland": (255, 0, 255),
    "forest_land": (0, 255, 0),
    "water": (0, 0, 255),
    "barren_land": (255, 255, 255),
    "unknown": (0, 0, 0),
}
IGNORE = 255


def binary_code(rgb: np.ndarray, threshold: int = 128) -> np.ndarray:
    """(…, 3) colours → 0..7, one bit per channel set where the channel is ≥ `threshold` (R = 4, G = 2, B = 1)."""
    bits = (np.asarray(rgb) >= threshold).astype(np.uint8)
    return bits[..., 0] * 4 + bits[..., 1] * 2 + bits[..., 2]


def color_lookup(classes: Sequence[str], background: str | None, ignore: Sequence[str] = ()) -> np.ndarray:
    """A table binary colour code (0..7) → mask index: background 0, `classes[k]` k+1, the rest 255."""
    table = np.full(8, IGNORE, np.uint8)
    if background is not None:
        table[binary_code(np.array(DEEPGLOBE_COLORS[background]))] = 0
    for k, name in enumerate(classes):
        table[binary_code(np.array(DEEPGLOBE_COLORS[name]))] = k + 1
    for name in ignore:
        table[binary_code(np.array(DEEPGLOBE_COLORS[name]))] = IGNORE
    return table


class DeepGlobeDataset(ImageFolderDataset):
    """A split of the labelled DeepGlobe land-cover tiles.

    Args:
        root: the DeepGlobe folder.
        split: a split file name under `splits_dir`, or a key of `fractions`.
        images: folder under `root` with `<id>_sat.jpg`; masks: folder with `<id>_mask.png` (default: images).
        splits_dir: folder of split files under `root`.
        fractions, seed: the seeded split used when there is no split file.
        background: the class painted as background (index 0), or None.
        ignore: classes mapped to 255 (not learnt, not evaluated).
        threshold: channel binarisation threshold of the RGB masks.
        min_pixels: pixels of a class needed for it to count as an image-level label.
    """

    def __init__(self, root: str | Path, split: str, images: str = "train", masks: str | None = None,
                 splits_dir: str = "splits", fractions: Mapping[str, float] | None = None, seed: int = 0,
                 background: str | None = "agriculture_land", ignore: Sequence[str] = (), threshold: int = 128,
                 min_pixels: int = 1):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.args.root={str(self.root)!r} is not a folder")
        unknown = [c for c in [background, *ignore] if c is not None and c not in DEEPGLOBE_COLORS]
        if unknown:
            raise ValueError(f"DeepGlobe classes {unknown} unknown; expected some of {list(DEEPGLOBE_COLORS)}")
        self.split = split
        self.images_dir = self.root / images
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"{self.images_dir}: DeepGlobe image folder is missing")
        self.masks_dir = self.root / masks if masks else self.images_dir
        self.classes = tuple(c for c in DEEPGLOBE_COLORS if c != background and c not in ignore)
        self.lookup = color_lookup(self.classes, background, ignore)
        self.threshold = threshold
        self.min_pixels = min_pixels
        self.ids = self._split_ids(split, splits_dir, fractions, seed)
        self._labels: dict[str, np.ndarray] = {}

    def _split_ids(self, split: str, splits_dir: str, fractions: Mapping[str, float] | None, seed: int) -> list[str]:
        split_file = self.root / splits_dir / f"{split}.txt"
        if split_file.is_file():
            return read_split(split_file)
        fractions = dict(fractions) if fractions else {"train": 0.75, "test": 0.25}
        if split not in fractions:
            raise FileNotFoundError(f"{split_file}: split {split!r} has no split file and is not one of the "
                                    f"seeded splits {list(fractions)}")
        ids = sorted(p.name[: -len("_sat.jpg")] for p in self.images_dir.glob("*_sat.jpg"))
        if not ids:
            raise FileNotFoundError(f"{self.images_dir}: no <id>_sat.jpg image to split")
        return seeded_split(ids, split, fractions, seed, source=str(self.images_dir))

    def image_path(self, image_id: str) -> Path:
        return self.images_dir / f"{image_id}_sat.jpg"

    def mask_path(self, image_id: str) -> Path | None:
        return self.masks_dir / f"{image_id}_mask.png"

    def load_mask(self, image_id: str) -> np.ndarray | None:
        """Class indices of the RGB mask (a palette or grey PNG is taken as indices already)."""
        path = self.mask_path(image_id)
        if not path.is_file():
            return None
        try:
            with Image.open(path) as img:
                if img.mode in ("P", "L"):
                    return np.asarray(img)
                rgb = np.asarray(img.convert("RGB"))
        except OSError as e:
            raise OSError(f"{path}: cannot decode mask of {image_id!r}: {e}") from None
        return self.lookup[binary_code(rgb, self.threshold)]

    def label(self, image_id: str) -> np.ndarray:
        if image_id not in self._labels:
            mask = self.load_mask(image_id)
            if mask is None:
                raise FileNotFoundError(f"{self.mask_path(image_id)}: mask of {image_id!r} is missing; "
                                        f"DeepGlobe labels are read from the masks")
            counts = np.bincount(mask.ravel(), minlength=256)[1:self.num_classes + 1]
            self._labels[image_id] = (counts >= self.min_pixels).astype(np.float32)
        return self._labels[image_id]
