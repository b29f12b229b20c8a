"""Planet: Understanding the Amazon from Space (Kaggle, 2017) in its released layout.

Layout under `root`: `train_v2.csv` (columns `image_name,tags`, tags space-separated) and the JPEG
chips `train-jpg/<image_name>.jpg` (256×256 RGB). 17 tags (`PLANET_CLASSES`, alphabetical, with the
data set's own spelling `artisinal_mine`). No masks.

Only the 40,479 training chips are labelled, so the splits are drawn from them: a seeded permutation
of the CSV's rows cut by `fractions` (`seeded_split`). The default holds out 30 % as validation as
in the MinMax-CAM benchmark (lucasdavid/minmax-cam@be94495 notebooks; the thesis states no seed, so the split
is ours: seed 0).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from wsss.data.voc import ImageFolderDataset

PLANET_CLASSES = (
    "agriculture", "artisinal_mine", "bare_ground", "blooming", "blow_down", "clear", "cloudy", "conventional_mine",
    "cultivation", "habitation", "haze", "partly_cloudy", "primary", "road", "selective_logging", "slash_burn",
    "water",
)


def seeded_split(ids: Sequence[str], split: str, fractions: Mapping[str, float], seed: int,
                 source: str = "data set") -> list[str]:
    """The ids of `split` in a deterministic partition of `ids`.

    The ids are permuted by `numpy.random.default_rng(seed)` and cut into consecutive blocks of
    `round(cumsum(fractions) * len(ids))`, in the order the splits are listed in `fractions`.
    Fractions must be positive and sum to at most 1 (what is left over belongs to no split). The
    returned ids keep the permuted order, so the partition does not depend on the split asked for.
    """
    if split not in fractions:
        raise ValueError(f"split {split!r} is not one of the splits of {source} ({', '.join(fractions)}); "
                         f"set dataset.args.fractions to add it")
    values = np.array([float(f) for f in fractions.values()])
    if (values <= 0).any() or values.sum() > 1 + 1e-9:
        raise ValueError(f"dataset.args.fractions={dict(fractions)} must be positive and sum to at most 1")
    bounds = np.round(np.concatenate([[0.0], np.cumsum(values)]) * len(ids)).astype(int)
    order = np.random.default_rng(seed).permutation(len(ids))
    k = list(fractions).index(split)
    return [ids[i] for i in order[bounds[k]:bounds[k + 1]]]


def read_tag_csv(path: Path, id_column: str, tags_column: str) -> dict[str, list[str]]:
    """`{id: [tag, ...]}` from a two-column CSV whose tags are space-separated."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label CSV is missing")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {id_column, tags_column} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: label CSV has columns {reader.fieldnames}, expected {id_column!r} and "
                             f"{tags_column!r}")
        rows = {row[id_column].strip(): (row[tags_column] or "").split() for row in reader}
    if not rows:
        raise ValueError(f"{path}: label CSV lists no image")
    return rows


class PlanetDataset(ImageFolderDataset):
    """A split of the labelled Planet chips.

    Args:
        root: the folder holding `train_v2.csv` and `train-jpg/`.
        split: a key of `fractions` (default `train` / `val`).
        csv_file: the label CSV under `root`.
        images: the chip folder under `root`.
        fractions: split name → fraction of the labelled chips, cut in this order.
        seed: seed of the permutation (fixed, independent of the training seed).
        classes: tag names in label order.
    """

    def __init__(self, root: str | Path, split: str, csv_file: str = "train_v2.csv", images: str = "train-jpg",
                 fractions: Mapping[str, float] | None = None, seed: int = 0,
                 classes: Sequence[str] = PLANET_CLASSES, image_suffix: str = ".jpg"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.args.root={str(self.root)!r} is not a folder")
        self.split = split
        self.images_dir = self.root / images
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"{self.images_dir}: Planet image folder is missing")
        self.image_suffix = image_suffix
        self.classes = tuple(classes)
        csv_path = self.root / csv_file
        self.label_files = (csv_path,)
        tags = read_tag_csv(csv_path, "image_name", "tags")
        index = {c: i for i, c in enumerate(self.classes)}
        self._labels: dict[str, np.ndarray] = {}
        for name, row in tags.items():
            unknown = [t for t in row if t not in index]
            if unknown:
                raise ValueError(f"{csv_path}: image {name!r} has tags {unknown} that are not among the "
                                 f"{len(self.classes)} classes")
            label = np.zeros(len(self.classes), np.float32)
            label[[index[t] for t in row]] = 1.0
            self._labels[name] = label
        fractions = dict(fractions) if fractions else {"train": 0.7, "val": 0.3}
        self.ids = seeded_split(list(tags), split, fractions, seed, source=str(csv_path))

    def image_path(self, image_id: str) -> Path:
        return self.images_dir / f"{image_id}{self.image_suffix}"

    def label(self, image_id: str) -> np.ndarray:
        try:
            return self._labels[image_id]
        except KeyError:
            raise KeyError(f"image {image_id!r} is not in the Planet label CSV") from None
