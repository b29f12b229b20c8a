"""Human Protein Atlas Image Classification (Kaggle, 2018) in its released layout.

Layout under `root`: `train.csv` (columns `Id,Target`, Target = space-separated class indices 0..27)
and four grey PNGs per sample, `train/<Id>_{red,green,blue,yellow}.png` (512×512): microtubules,
the protein of interest, the nucleus and the endoplasmic reticulum. 28 classes (`HPA_CLASSES`).
No masks.

Channels (`channels`):
- 4: the stains stacked as an (H, W, 4) uint8 image in the order red, green, blue, yellow; the
  backbone takes `in_chans: 4` (timm adapts the first convolution) and the normalisation needs
  4 values (`dataset.mean/std` in conf/dataset/hpa.yaml: ImageNet's, the yellow channel reusing
  red's, as lucasdavid/PNOC@6c8950a:datasets/hpa.py).
- 3: an RGB composite, yellow = red + green shown half-strength on both:
  R = min(255, red + yellow/2), G = min(255, green + yellow/2), B = blue.

Splits: only `train.csv` is labelled, so they are drawn from it by `seeded_split` (default 90 % /
10 % train / val; the thesis gives no split).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from wsss.data.images import image_to_rgb
from wsss.data.planet import read_tag_csv, seeded_split
from wsss.data.voc import ImageFolderDataset

HPA_CLASSES = (
    "Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar center", "Nuclear speckles",
    "Nuclear bodies", "Endoplasmic reticulum", "Golgi apparatus", "Peroxisomes", "Endosomes", "Lysosomes",
    "Intermediate filaments", "Actin filaments", "Focal adhesion sites", "Microtubules", "Microtubule ends",
    "Cytokinetic bridge", "Mitotic spindle", "Microtubule organizing center", "Centrosome", "Lipid droplets",
    "Plasma membrane", "Cell junctions", "Mitochondria", "Aggresome", "Cytosol", "Cytoplasmic bodies",
    "Rods & rings",
)
STAINS = ("red", "green", "blue", "yellow")


def read_stain(path: Path) -> np.ndarray:
    """One stain as (H, W) uint8. 16-bit PNGs are scaled to 8 bits; colour files (the HPAv18 external
    JPEGs are tinted) keep their strongest channel, which is the stain itself."""
    try:
        with Image.open(path) as img:
            if img.mode == "L":
                return np.asarray(img)
            return image_to_rgb(img, path).max(axis=2)  # 16-bit grey scaled by wsss/data/images.py
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: stain image is missing") from None
    except OSError as e:
        raise OSError(f"{path}: cannot decode stain image (corrupt or truncated file?): {e}") from None


def composite_rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray, yellow: np.ndarray) -> np.ndarray:
    """R = red + yellow/2, G = green + yellow/2, B = blue, saturated at 255."""
    half = yellow.astype(np.uint16) // 2
    r = np.minimum(red.astype(np.uint16) + half, 255)
    g = np.minimum(green.astype(np.uint16) + half, 255)
    return np.stack([r, g, blue.astype(np.uint16)], axis=-1).astype(np.uint8)


class HPADataset(ImageFolderDataset):
    """A split of the labelled HPA samples, as 4-channel stacks or RGB composites.

    Args:
        root: the folder holding `train.csv` and `train/`.
        split: a key of `fractions` (default `train` / `val`).
        channels: 4 (red, green, blue, yellow) or 3 (RGB composite).
        csv_file, images: label CSV and image folder under `root`.
        fractions, seed: the seeded split (`seeded_split`).
        image_suffix: `.png` (Kaggle) or `.jpg` (HPAv18 external data).
    """

    def __init__(self, root: str | Path, split: str, channels: int = 4, csv_file: str = "train.csv",
                 images: str = "train", fractions: Mapping[str, float] | None = None, seed: int = 0,
                 classes: Sequence[str] = HPA_CLASSES, image_suffix: str = ".png"):
        if channels not in (3, 4):
            raise ValueError(f"dataset.args.channels={channels!r}: expected 4 (stacked stains) or 3 (RGB composite)")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.args.root={str(self.root)!r} is not a folder")
        self.split = split
        self.channels = channels
        self.images_dir = self.root / images
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"{self.images_dir}: HPA image folder is missing")
        self.image_suffix = image_suffix
        self.classes = tuple(classes)
        csv_path = self.root / csv_file
        self.label_files = (csv_path,)
        targets = read_tag_csv(csv_path, "Id", "Target")
        self._labels = {i: self._parse_target(t, i, csv_path) for i, t in targets.items()}
        fractions = dict(fractions) if fractions else {"train": 0.9, "val": 0.1}
        self.ids = seeded_split(list(targets), split, fractions, seed, source=str(csv_path))

    def _parse_target(self, target: list[str], image_id: str, csv_path: Path) -> np.ndarray:
        label = np.zeros(len(self.classes), np.float32)
        for t in target:
            if not t.isdigit() or int(t) >= len(self.classes):
                raise ValueError(f"{csv_path}: sample {image_id!r} has Target {t!r}; expected a class index "
                                 f"0..{len(self.classes) - 1}")
            label[int(t)] = 1.0
        return label

    def stain_path(self, image_id: str, stain: str) -> Path:
        return self.images_dir / f"{image_id}_{stain}{self.image_suffix}"

    def image_path(self, image_id: str) -> Path:
        """The red stain: the file that stands for the sample (scans and fingerprints)."""
        return self.stain_path(image_id, "red")

    def load_image(self, image_id: str) -> np.ndarray:
        stains = [read_stain(self.stain_path(image_id, s)) for s in STAINS]
        if len({s.shape for s in stains}) != 1:
            raise ValueError(f"{self.images_dir}/{image_id}_*{self.image_suffix}: stains of {image_id!r} differ "
                             f"in size: {[s.shape for s in stains]}")
        if self.channels == 3:
            return composite_rgb(*stains)
        return np.stack(stains, axis=-1)

    def label(self, image_id: str) -> np.ndarray:
        try:
            return self._labels[image_id]
        except KeyError:
            raise KeyError(f"sample {image_id!r} is not in the HPA label CSV") from None
