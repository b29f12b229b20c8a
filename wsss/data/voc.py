"""Pascal VOC layout: the format every segmentation data set here is read from.

A data set in this layout has `JPEGImages/<id>.jpg`, `Annotations/<id>.xml`,
`SegmentationClass/<id>.png` (palette PNGs, 255 = ignore), optionally `SegmentationClassAug/`
(the SBD-augmented masks) and split files in `ImageSets/Segmentation/<split>.txt` or
`ImageSets/Main/<split>.txt`. The synthetic data set is written in this layout too, so one
loader serves both.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.data.images import read_rgb

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# the mask folders of `masks: auto`, in the order they are searched for each image
MASK_FOLDERS = ("SegmentationClassAug", "SegmentationClass")


@dataclass
class Sample:
    id: str
    image: np.ndarray          # H×W×3 uint8
    label: np.ndarray          # C float32 multi-hot (foreground classes only)
    mask: np.ndarray | None    # H×W uint8: 0 = background, c+1 = class c, 255 = ignore


class ImageFolderDataset:
    """Shared behaviour of every on-disk data set: ids, labels, images and masks by id."""

    classes: tuple[str, ...]
    ids: list[str]
    label_files: tuple[Path, ...] = ()  # files holding every image's labels (a CSV, a JSON), for the scan cache

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        image_id = self.ids[index]
        return Sample(image_id, self.load_image(image_id), self.label(image_id), self.load_mask(image_id))

    def image_path(self, image_id: str) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def mask_path(self, image_id: str) -> Path | None:
        return None

    def label(self, image_id: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def label_paths(self, image_id: str) -> list[Path]:
        """The per-image files `label` reads (none when the labels live in `label_files`)."""
        return []

    def load_image(self, image_id: str) -> np.ndarray:
        return read_rgb(self.image_path(image_id))  # 16-bit, palette, grey, CMYK: wsss/data/images.py

    def load_mask(self, image_id: str) -> np.ndarray | None:
        path = self.mask_path(image_id)
        if path is None or not path.is_file():
            return None
        try:
            with Image.open(path) as img:
                if img.mode not in ("P", "L"):
                    raise ValueError(f"{path}: mask must be a palette or grey PNG of class indices, got mode {img.mode}")
                return np.asarray(img)
        except OSError as e:
            raise OSError(f"{path}: cannot decode mask of {image_id!r}: {e}") from None

    @property
    def has_masks(self) -> bool:
        return bool(self.ids) and self.mask_path(self.ids[0]) is not None and self.mask_path(self.ids[0]).is_file()


# a line of the DeepLab SBD release's lists: "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png"
DEEPLAB_LIST_LINE = re.compile(r"^/?JPEGImages/([^/\\]+)\.(?:jpg|jpeg|png)$")


def read_split(path: Path) -> list[str]:
    """The ids of a split file: the first word of each non-empty line, or the image's name in the image-mask
    list format of the DeepLab SBD release. Duplicate or path-like ids are refused."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file is missing")
    ids, lines = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            first = line.split()[0]
            listed = DEEPLAB_LIST_LINE.match(first)  # "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png"
            ids.append(listed.group(1) if listed else first)
            lines.append(number)
    if not ids:
        raise ValueError(f"{path}: split file lists no image")
    problems = id_problems(ids, lines)
    if problems:
        raise ValueError(f"{path}: {len(problems)} bad image id(s) in the split file:\n  " + "\n  ".join(problems[:10]))
    return ids


def id_problems(ids: list[str], lines: list[int] | None = None) -> list[str]:
    """Ids that would be read or written twice, or outside their folder (artifacts are `<folder>/<id>.<ext>`)."""
    where = (lambda i: f"line {lines[i]}") if lines else (lambda i: f"entry {i + 1}")
    problems, first = [], {}
    for i, image_id in enumerate(ids):
        if image_id in first:
            problems.append(f"{where(i)}: id {image_id!r} is listed again (first at {where(first[image_id])}); "
                            "each image must be listed once")
            continue
        first[image_id] = i
        if "/" in image_id or "\\" in image_id or ".." in image_id:
            problems.append(f"{where(i)}: id {image_id!r} looks like a path; an id is a file name without folder "
                            "or extension (e.g. 2007_000032)")
    return problems


def labels_from_xml(path: Path, class_index: dict[str, int]) -> np.ndarray:
    """Every <object> of the annotation (difficult ones included); zero-area boxes are dropped."""
    label = np.zeros(len(class_index), np.float32)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path}: malformed XML annotation ({e})") from None
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_index:
            raise ValueError(f"{path}: object class {name!r} is not one of the data set's classes")
        box = obj.find("bndbox")
        if box is not None:
            x0, y0, x1, y1 = (float(box.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x1 <= x0 or y1 <= y0:
                continue
        label[class_index[name]] = 1.0
    return label


def labels_from_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    label = np.zeros(num_classes, np.float32)
    values = np.unique(mask)
    values = values[(values > 0) & (values != 255)]
    if values.size and values.max() > num_classes:
        raise ValueError(f"mask holds class index {int(values.max())} but the data set has {num_classes} classes")
    label[values.astype(int) - 1] = 1.0
    return label


class VOCDataset(ImageFolderDataset):
    """A split of a VOCdevkit-style folder.

    Splits are looked up in `ImageSets/Segmentation` first, then `ImageSets/Main` (VOC2007's
    classification splits). Labels come from the XML annotations, or from the masks when an image
    has no annotation file.
    """

    def __init__(self, root: str | Path, split: str, classes: tuple[str, ...] | list[str] = VOC_CLASSES,
                 masks: str = "auto"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.args.root={str(self.root)!r} is not a folder")
        self.split = split
        self.classes = tuple(classes)
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        split_file = self._split_file(split)
        self.ids = read_split(split_file)
        self.mask_dirs = self._mask_dirs(masks)
        self._labels: dict[str, np.ndarray] = {}

    def _split_file(self, split: str) -> Path:
        for sub in ("Segmentation", "Main"):
            p = self.root / "ImageSets" / sub / f"{split}.txt"
            if p.is_file():
                return p
        raise FileNotFoundError(f"{self.root}/ImageSets/{{Segmentation,Main}}/{split}.txt: split {split!r} is missing")

    def _mask_dirs(self, masks: str) -> tuple[Path, ...]:
        """The mask folders, searched in this order for each image.

        `auto`: SegmentationClassAug (SBD's grey masks) first, then SegmentationClass (VOC's palette
        masks): the Aug download lacks the val images, whose masks only VOC's own folder holds."""
        if masks == "none":
            return ()
        if masks != "auto":
            return (self.root / masks,)
        return tuple(d for d in (self.root / n for n in MASK_FOLDERS) if d.is_dir())

    def image_path(self, image_id: str) -> Path:
        for suffix in IMAGE_SUFFIXES:
            p = self.root / "JPEGImages" / f"{image_id}{suffix}"
            if p.is_file():
                return p
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path | None:
        """The mask of `image_id` in the first folder that holds it (`mask_path(i).parent` says which); when
        none does, its path in the last folder searched (named by errors), or None without mask folders."""
        path = None
        for folder in self.mask_dirs:
            path = folder / f"{image_id}.png"
            if path.is_file():
                return path
        return path

    def label(self, image_id: str) -> np.ndarray:
        if image_id not in self._labels:
            xml = self.root / "Annotations" / f"{image_id}.xml"
            if xml.is_file():
                self._labels[image_id] = labels_from_xml(xml, self._class_index)
            else:
                mask = self.load_mask(image_id)
                if mask is None:
                    raise FileNotFoundError(f"{xml}: no annotation and no mask to read the labels of {image_id!r} from")
                self._labels[image_id] = labels_from_mask(mask, self.num_classes)
        return self._labels[image_id]

    def label_paths(self, image_id: str) -> list[Path]:
        xml = self.root / "Annotations" / f"{image_id}.xml"
        mask = self.mask_path(image_id)
        return [xml] if xml.is_file() or mask is None else [xml, mask]
