"""MS COCO 2014 / 2017 in their released layout: image folders + `instances_<split>.json`.

Layout under `root` (every path is configurable, `{split}` is replaced by the split name):
- images: `<split>/<file_name>` where `file_name` comes from the JSON's `images` list
  (`COCO_train2014_<12-digit id>.jpg` for 2014, `<12-digit id>.jpg` for 2017);
- labels: `annotations/instances_<split>.json`; an image's label is the set of categories of its
  annotations (crowd ones included unless `include_crowd=false`);
- masks (optional): a folder of index PNGs `<12-digit id>.png` (0 = background, c+1 = class c,
  255 = ignore), e.g. `coco_seg_anno/` of the COCO14 WSSS benchmark
  (lucasdavid/PNOC@f250e0d:core/datasets/coco14.py).

Image ids are the 12-digit zero-padded COCO ids. Classes are the JSON's categories sorted by their
(non-contiguous, 1..90) ids, which is the standard 80-class order (person, bicycle, …, toothbrush).
Images without any annotation are kept with an empty label (the data module leaves them out of
training). The JSON (≈450 MB for train2017) is parsed once per process and its id → labels index
cached in memory and in a small npz next to it (written atomically; ignored once the JSON's size or
mtime changes).
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsss.artifacts import atomic_write_bytes
from wsss.data.voc import ImageFolderDataset, read_split

log = logging.getLogger(__name__)

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
#: the COCO category id of each class of COCO_CLASSES (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are unused)
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)

CACHE_VERSION = 1


@dataclass
class CocoIndex:
    """What the instances JSON says about image-level labels, in arrays."""

    image_ids: np.ndarray      # (N,) int64, sorted
    file_names: np.ndarray     # (N,) str
    labels: np.ndarray         # (N, C) uint8 multi-hot, columns in category-id order
    category_ids: np.ndarray   # (C,) int64, sorted
    class_names: np.ndarray    # (C,) str

    def row(self) -> dict[int, int]:
        return {int(i): r for r, i in enumerate(self.image_ids)}


def parse_instances(path: Path, include_crowd: bool = True) -> CocoIndex:
    """Image-level labels of every image listed in a COCO instances JSON."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a valid COCO instances JSON: {e}") from None
    for key in ("images", "categories"):
        if key not in data:
            raise ValueError(f"{path}: COCO instances JSON has no {key!r} list")
    categories = sorted(data["categories"], key=lambda c: int(c["id"]))
    if not categories:
        raise ValueError(f"{path}: COCO instances JSON lists no category")
    column = {int(c["id"]): k for k, c in enumerate(categories)}
    images = sorted(data["images"], key=lambda im: int(im["id"]))
    row = {int(im["id"]): r for r, im in enumerate(images)}
    labels = np.zeros((len(images), len(categories)), np.uint8)
    for ann in data.get("annotations") or ():
        if not include_crowd and ann.get("iscrowd", 0):
            continue
        image_id, category_id = int(ann["image_id"]), int(ann["category_id"])
        if category_id not in column:
            raise ValueError(f"{path}: annotation {ann.get('id')} has category_id {category_id}, "
                             f"which is not in the JSON's categories")
        if image_id not in row:
            raise ValueError(f"{path}: annotation {ann.get('id')} refers to image_id {image_id}, "
                             f"which is not in the JSON's images")
        labels[row[image_id], column[category_id]] = 1
    return CocoIndex(
        image_ids=np.array([int(im["id"]) for im in images], np.int64),
        file_names=np.array([str(im["file_name"]) for im in images], dtype=str),
        labels=labels,
        category_ids=np.array([int(c["id"]) for c in categories], np.int64),
        class_names=np.array([str(c["name"]) for c in categories], dtype=str),
    )


def _source_key(path: Path, include_crowd: bool) -> np.ndarray:
    st = path.stat()
    return np.array([CACHE_VERSION, st.st_size, st.st_mtime_ns, int(include_crowd)], np.int64)


def _read_cache(cache: Path, key: np.ndarray) -> CocoIndex | None:
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            if not np.array_equal(z["source"], key):
                return None
            return CocoIndex(**{f: z[f] for f in CocoIndex.__dataclass_fields__})
    except (OSError, ValueError, KeyError) as e:
        log.warning("%s: unreadable label cache (%s); parsing the JSON again", cache, e)
        return None


def _write_cache(cache: Path, key: np.ndarray, index: CocoIndex) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, source=key, **{f: getattr(index, f) for f in CocoIndex.__dataclass_fields__})
    try:
        atomic_write_bytes(cache, buf.getvalue())
    except OSError as e:  # read-only data folders are common on clusters: keep the in-memory index only
        log.warning("%s: cannot write the label cache (%s); the JSON will be parsed again next run", cache, e)


_MEMORY: dict[tuple, CocoIndex] = {}


def load_instances(path: Path, include_crowd: bool = True, cache_file: Path | None = None) -> CocoIndex:
    """`parse_instances`, memoised per process and, when `cache_file` is given, on disk."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COCO instances JSON is missing")
    key = _source_key(path, include_crowd)
    mem_key = (str(path.resolve()), *key.tolist())
    if mem_key in _MEMORY:
        return _MEMORY[mem_key]
    index = _read_cache(cache_file, key) if cache_file is not None else None
    if index is None:
        log.info("parsing %s (once; cached afterwards)", path)
        index = parse_instances(path, include_crowd)
        if cache_file is not None:
            _write_cache(cache_file, key, index)
    _MEMORY[mem_key] = index
    return index


def coco_id(image_id: int) -> str:
    return f"{int(image_id):012d}"


class COCODataset(ImageFolderDataset):
    """A split of MS COCO (2014 or 2017), labels from the instances JSON.

    Args:
        root: the COCO folder.
        split: e.g. `train2017`, `val2017`, `train2014`, `val2014`.
        images: image folder under `root` (`{split}` is replaced by the split).
        annotations: instances JSON under `root`.
        masks: folder of index PNG masks under `root`, or None (no masks).
        ids_file: a text file (one id per line, under `root`) restricting the split to those ids,
            e.g. the WSSS `train2014.txt`; None = every image of the JSON.
        include_crowd: whether `iscrowd` annotations count as labels.
        cache: write/read the parsed labels to/from `<json>.labels.npz` (or `cache_dir`).
        cache_dir: folder for that npz instead of next to the JSON (read-only data folders).
    """

    def __init__(self, root: str | Path, split: str, images: str = "{split}",
                 annotations: str = "annotations/instances_{split}.json", masks: str | None = None,
                 ids_file: str | None = None, include_crowd: bool = True, cache: bool = True,
                 cache_dir: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.args.root={str(self.root)!r} is not a folder")
        self.split = split
        self.images_dir = self.root / images.format(split=split)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"{self.images_dir}: image folder of COCO split {split!r} is missing")
        json_path = self.root / annotations.format(split=split)
        self.label_files = (json_path,)
        if not json_path.is_file():
            raise FileNotFoundError(f"{json_path}: COCO instances JSON of split {split!r} is missing")
        cache_file = None
        if cache:
            folder = Path(cache_dir) if cache_dir else json_path.parent
            cache_file = folder / f"{json_path.stem}.labels.npz"
        self.index = load_instances(json_path, include_crowd, cache_file)
        self.classes = tuple(str(n) for n in self.index.class_names)
        self._row = self.index.row()
        self.masks_dir = self.root / masks.format(split=split) if masks else None
        if self.masks_dir is not None and not self.masks_dir.is_dir():
            raise FileNotFoundError(f"{self.masks_dir}: mask folder of COCO split {split!r} is missing "
                                    f"(set dataset.args.masks=null for a split without masks)")
        self.ids = self._select_ids(ids_file, json_path)

    def _select_ids(self, ids_file: str | None, json_path: Path) -> list[str]:
        if ids_file is None:
            return [coco_id(i) for i in self.index.image_ids]
        ids = [coco_id(int(i)) for i in read_split(self.root / ids_file.format(split=self.split))]
        unknown = [i for i in ids if int(i) not in self._row]
        if unknown:
            raise ValueError(f"{self.root / ids_file.format(split=self.split)}: {len(unknown)} ids are not images "
                             f"of {json_path} (first: {unknown[:3]})")
        return ids

    def _row_of(self, image_id: str) -> int:
        try:
            return self._row[int(image_id)]
        except (KeyError, ValueError):
            raise KeyError(f"image id {image_id!r} is not in COCO split {self.split!r}") from None

    def image_path(self, image_id: str) -> Path:
        return self.images_dir / str(self.index.file_names[self._row_of(image_id)])

    def mask_path(self, image_id: str) -> Path | None:
        return None if self.masks_dir is None else self.masks_dir / f"{coco_id(int(image_id))}.png"

    def label(self, image_id: str) -> np.ndarray:
        return self.index.labels[self._row_of(image_id)].astype(np.float32)
