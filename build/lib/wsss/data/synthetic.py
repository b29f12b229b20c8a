"""A procedural multi-label segmentation data set, written once in the VOC layout.

Each class is a shape with its own colour family; an image holds a few of them on a textured
background, so image-level labels, pixel masks and bounding boxes all come from the same
drawing. Everything is drawn from `seed`, so the same config always yields the same files,
cached under a folder named by the hash of the config.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.artifacts import PALETTE

SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond", "hbar", "vbar", "ellipse", "star")
COLOURS = (
    (220, 40, 40), (40, 180, 60), (50, 80, 220), (230, 200, 30), (200, 60, 200),
    (30, 200, 210), (240, 130, 20), (120, 70, 30), (250, 250, 250), (90, 90, 90),
)


@dataclass
class SyntheticSpec:
    num_classes: int = 5
    image_size: int = 96
    splits: dict = field(default_factory=lambda: {"train": 160, "val": 48})
    objects: tuple = (1, 3)           # min and max objects per image
    object_size: tuple = (0.25, 0.5)  # side of an object as a fraction of the image side
    cooccurrence: float = 0.0         # probability that an extra object is the partner class (c+1) of the first
    ignore_border: int = 1            # width of the 255 band around objects, as VOC masks have
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.num_classes <= len(SHAPES):
            raise ValueError(f"dataset.num_classes={self.num_classes}: the synthetic set draws 1 to {len(SHAPES)} classes")
        if self.objects[0] < 1 or self.objects[1] < self.objects[0]:
            raise ValueError(f"dataset.objects={list(self.objects)}: expected [min, max] with 1 <= min <= max")

    @property
    def classes(self) -> tuple[str, ...]:
        return SHAPES[: self.num_classes]

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


def _shape_mask(shape: str, size: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "disk":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return (abs(dy) <= r * 0.85) & (abs(dx) <= r * 0.85)
    if shape == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        return ((abs(dy) <= r * 0.3) & (abs(dx) <= r)) | ((abs(dx) <= r * 0.3) & (abs(dy) <= r))
    if shape == "ring":
        d = dy**2 + dx**2
        return (d <= r**2) & (d >= (0.55 * r) ** 2)
    if shape == "diamond":
        return abs(dy) + abs(dx) <= r
    if shape == "hbar":
        return (abs(dy) <= r * 0.35) & (abs(dx) <= r)
    if shape == "vbar":
        return (abs(dx) <= r * 0.35) & (abs(dy) <= r)
    if shape == "ellipse":
        return (dy / (0.55 * r)) ** 2 + (dx / r) ** 2 <= 1
    if shape == "star":
        ang = np.arctan2(dy, dx)
        rad = r * (0.55 + 0.45 * np.cos(5 * ang) ** 2)
        return dy**2 + dx**2 <= rad**2
    raise ValueError(shape)


def draw_sample(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (H×W×3 uint8) and its mask (0 = background, c+1 = class c, 255 = ignore)."""
    s = spec.image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    base = rng.uniform(60, 160, size=3)
    slope = rng.uniform(-40, 40, size=(2, 3))
    image = base + (yy[..., None] / s - 0.5) * slope[0] + (xx[..., None] / s - 0.5) * slope[1]
    image = image + rng.normal(0, 12, size=(s, s, 3))
    mask = np.zeros((s, s), np.uint8)

    n = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
    first = int(rng.integers(spec.num_classes))
    classes = [first]
    for _ in range(n - 1):
        if spec.num_classes > 1 and rng.random() < spec.cooccurrence:
            classes.append((first + 1) % spec.num_classes)
        else:
            classes.append(int(rng.integers(spec.num_classes)))
    for c in classes:
        r = rng.uniform(*spec.object_size) * s / 2
        cy, cx = rng.uniform(r * 0.6, s - r * 0.6, size=2)
        region = _shape_mask(SHAPES[c], s, yy, xx, cy, cx, r)
        colour = np.asarray(COLOURS[c], np.float32) + rng.normal(0, 15, size=3)
        texture = rng.normal(0, 10, size=(s, s, 1))
        image[region] = np.clip(colour + texture[region], 0, 255)
        mask[region] = c + 1
    if spec.ignore_border:
        mask = _ignore_border(mask, spec.ignore_border)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _ignore_border(mask: np.ndarray, width: int) -> np.ndarray:
    """Mark pixels whose neighbourhood holds two different labels as 255."""
    padded = np.pad(mask, width, mode="edge")
    h, w = mask.shape
    edge = np.zeros_like(mask, dtype=bool)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            shifted = padded[width + dy: width + dy + h, width + dx: width + dx + w]
            edge |= shifted != mask
    out = mask.copy()
    out[edge] = 255
    return out


def _annotation_xml(image_id: str, mask: np.ndarray, classes: tuple[str, ...]) -> str:
    h, w = mask.shape
    objects = []
    for c in np.unique(mask):
        if c == 0 or c == 255:
            continue
        ys, xs = np.nonzero(mask == c)
        objects.append(
            f"  <object><name>{classes[c - 1]}</name><difficult>0</difficult><bndbox><xmin>{xs.min() + 1}</xmin>"
            f"<ymin>{ys.min() + 1}</ymin><xmax>{xs.max() + 1}</xmax><ymax>{ys.max() + 1}</ymax></bndbox></object>"
        )
    body = "\n".join(objects)
    return (f"<annotation><filename>{image_id}.png</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>\n{body}\n</annotation>\n")


def write_synthetic(spec: SyntheticSpec, cache_dir: str | Path) -> Path:
    """Write the data set once under `cache_dir/synthetic-<digest>` and return that folder."""
    root = Path(cache_dir) / f"synthetic-{spec.digest()}"
    if (root / "spec.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
    try:
        for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation", "ImageSets/Main"):
            (tmp / sub).mkdir(parents=True)
        index = 0
        for split, count in spec.splits.items():
            ids = []
            for _ in range(int(count)):
                image_id = f"{split}_{index:05d}"
                rng = np.random.default_rng([spec.seed, index])
                image, mask = draw_sample(spec, rng)
                # PNG keeps the synthetic images lossless; the loader accepts .jpg and .png.
                Image.fromarray(image).save(tmp / "JPEGImages" / f"{image_id}.png")
                m = Image.fromarray(mask, mode="P")
                m.putpalette(PALETTE)
                m.save(tmp / "SegmentationClass" / f"{image_id}.png")
                (tmp / "Annotations" / f"{image_id}.xml").write_text(_annotation_xml(image_id, mask, spec.classes))
                ids.append(image_id)
                index += 1
            listing = "\n".join(ids) + "\n"
            (tmp / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(listing)
            (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text(listing)
        (tmp / "spec.json").write_text(json.dumps({**asdict(spec), "classes": list(spec.classes)}, indent=2,
                                                  default=list))
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "spec.json").is_file():  # lost a race to another process: theirs is identical
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


class SyntheticDataset:
    """Factory: writes (once) and opens a split of the synthetic set as a VOC-layout data set."""

    def __new__(cls, root: str | Path, split: str, num_classes: int = 5, image_size: int = 96,
                splits: dict | None = None, objects=(1, 3), object_size=(0.25, 0.5), cooccurrence: float = 0.0,
                ignore_border: int = 1, seed: int = 0, masks: str = "auto"):
        from wsss.data.voc import VOCDataset

        spec = SyntheticSpec(num_classes, image_size, dict(splits or {"train": 160, "val": 48}), tuple(objects),
                             tuple(object_size), cooccurrence, ignore_border, seed)
        folder = write_synthetic(spec, root)
        return VOCDataset(folder, split, spec.classes, masks=masks)
