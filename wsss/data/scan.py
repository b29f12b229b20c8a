"""A cheap up-front scan of the splits a run will read, so bad data fails in seconds, not hours.

What each split needs follows from what the run's tasks declare they read (`requirements`):
- every scanned split: no id listed twice and none that looks like a path (artifacts are written
  to `<folder>/<id>.<ext>`); each image exists, is a complete file (PIL `verify`, which checks PNG
  chunk CRCs; for JPEG the end-of-image marker must be present) of a mode `wsss.data.images` reads;
- the splits whose samples carry labels (training, validation, WSSS prediction): each label set
  parses and names known classes; the train split of `fit` also needs a non-empty one (a weakly
  supervised stage learns from image-level labels only);
- the splits whose loaders read masks (the same, and evaluation): each mask that exists is a
  class-index PNG of the image's size holding only 0..num_classes and 255; evaluated splits (and
  training on `stage.masks=gt`) need a mask for every image. A split with no mask at all is left
  alone (the evaluate task says so and skips it).

Images are never decoded (header + verify); the masks a split's loaders read are decoded once.
The log line of each split says how many masks came from which folder. A scan that passed is cached
in `<cache_dir>/<dataset>-<split>-<key>.json` with a fingerprint of the size and mtime of every file
the loaders read (image, annotation, mask, label CSV/JSON), so the next run of any stage on unchanged
data skips it. `dataset.scan=false` turns the whole scan off.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.artifacts import atomic_write_json
from wsss.data.images import mode_problem
from wsss.data.voc import id_problems
from wsss.user_errors import UserError

log = logging.getLogger(__name__)

JPEG_EOI = b"\xff\xd9"
MAX_LISTED = 10
SCAN_RULES = 3  # part of the cache key: a scan cached under older rules is not trusted
# Larger images fail full-size inference (an allocation of C×H×W floats per scale) with an error naming no
# image; +dataset.max_pixels=N changes the limit
MAX_PIXELS = 50_000_000


class DataScanError(UserError, ValueError):
    """The data set has files a run would fail on (or silently skip)."""


@dataclass(frozen=True)
class Needs:
    labels: bool = False     # each image's label set is read: its annotation parses and names known classes
    label_set: bool = False  # ... and holds at least one class (training on image-level labels)
    masks: bool = False      # the masks that exist are read: class-index PNGs of the image's size, values 0..C or 255
    all_masks: bool = False  # every image has a mask (evaluation, training on ground-truth masks)


def requirements(plain: dict, reads: list[str]) -> dict[str, Needs]:
    """Which splits this run reads, and what its loaders read from each; `reads` is what its tasks declare
    they read (wsss/stage_contract.py: fit, predict, evaluate, explain).

    A WSSS stage's loaders read image, label set and (when there is one) mask of every training,
    validation and prediction sample. A segmentation stage (`stage.masks`) trains on pseudo masks or,
    with `stage.masks=gt`, on the ground truth, and predicts from the images alone.
    """
    d, stage = plain["dataset"], plain["stage"]
    segmentation = "masks" in stage
    needs: dict[str, Needs] = {}

    def add(split, **kw):
        if split:
            old = needs.get(split, Needs())
            needs[split] = Needs(**{k: getattr(old, k) or kw.get(k, False) for k in Needs.__dataclass_fields__})

    if "fit" in reads:
        train = stage.get("train_split") or d["train_split"]
        val = stage["val_split"] if "val_split" in stage else d["val_split"]
        if segmentation:
            gt = stage["masks"] == "gt"
            add(train, labels=True, masks=gt, all_masks=gt)
            add(val, labels=True, masks=gt)
        else:
            add(train, labels=True, label_set=True, masks=True)
            add(val, labels=True, masks=True)
    if "predict" in reads:
        for s in stage.get("predict_splits") or d.get("predict_splits") or []:
            add(s, labels=not segmentation, masks=not segmentation)
    if "explain" in reads:  # the XAI benchmark reads image, label set and mask of its split
        add(stage.get("split"), labels=True, masks=True)
    if "evaluate" in reads:
        for s in stage.get("eval_splits") or d.get("eval_splits") or []:
            add(s, labels=not segmentation, masks=True, all_masks=True)
    return needs


# -- one file ---------------------------------------------------------------------------------------
def image_problem(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[str | None, tuple[int, int] | None]:
    """(what is wrong with the image file or None, its (height, width))."""
    if not path.is_file():
        return f"{path}: image file is missing", None
    try:
        with Image.open(path) as im:
            w, h = im.size
            fmt, mode = im.format, im.mode
            im.verify()
    except Exception as e:  # PIL raises many types for broken files
        return f"{path}: corrupt or truncated image ({type(e).__name__}: {e})", None
    if w * h > max_pixels:
        return (f"{path}: {w}x{h} image ({w * h / 1e6:.1f} megapixels) is above the limit of "
                f"{max_pixels / 1e6:g} megapixels (dataset.max_pixels): full-size inference would run out of "
                "memory on it. Resize it, or raise the limit with +dataset.max_pixels=<pixels>"), None
    unsupported = mode_problem(mode, fmt)
    if unsupported:
        return f"{path}: {unsupported}", None
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 256))
            if JPEG_EOI not in f.read():
                return f"{path}: truncated JPEG (no end-of-image marker)", None
    return None, (h, w)


def label_problem(dataset, image_id: str, needs: Needs) -> str | None:
    try:
        label = dataset.label(image_id)
    except (OSError, ValueError, KeyError) as e:
        return str(e).strip("'\"")
    if needs.label_set and float(np.asarray(label).sum()) == 0:
        return (f"{dataset.image_path(image_id)}: image {image_id!r} has an empty label set; "
                "training on image-level labels needs at least one class per image")
    return None


def mask_problem(dataset, image_id: str, size: tuple[int, int], num_classes: int, required: bool) -> str | None:
    path = dataset.mask_path(image_id)
    try:
        mask = dataset.load_mask(image_id)
    except (OSError, ValueError) as e:
        return str(e)
    if mask is None:
        return f"{path}: mask of {image_id!r} is missing (needed to evaluate this split)" if required else None
    if mask.shape != size:
        return f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} but its image is {size[0]}x{size[1]} (HxW)"
    values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256)) if mask.dtype == np.uint8 else np.unique(mask)
    bad = values[(values > num_classes) & (values != 255)]
    if bad.size:
        return (f"{path}: mask values {bad.tolist()[:8]} are outside 0..{num_classes} (classes + background) "
                "and 255 (ignore)")
    return None


def mask_folder(dataset, image_id: str) -> str | None:
    """The folder the loader reads the mask of `image_id` from, None when it has none."""
    path = dataset.mask_path(image_id)
    return path.parent.name if path is not None and Path(path).is_file() else None


# -- one split --------------------------------------------------------------------------------------
def files_read(dataset, image_id: str, needs: Needs) -> list[Path]:
    """Every file the loaders read for `image_id` under `needs` (missing ones included: adding one matters)."""
    paths = [Path(dataset.image_path(image_id))]
    if needs.labels:
        paths += [Path(p) for p in dataset.label_paths(image_id)] if hasattr(dataset, "label_paths") else []
    if (needs.masks or needs.all_masks) and dataset.mask_path(image_id) is not None:
        paths.append(Path(dataset.mask_path(image_id)))
    return paths


def fingerprint(dataset, needs: Needs) -> str:
    """Size and mtime of every file the split's loaders read, per-image and shared (label CSV, JSON)."""
    h = hashlib.sha256()
    shared = [Path(p) for p in getattr(dataset, "label_files", ())] if needs.labels else []
    for image_id, paths in [("", shared), *((i, files_read(dataset, i, needs)) for i in dataset.ids)]:
        for p in paths:
            try:
                st = p.stat()
                h.update(f"{image_id}|{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{image_id}|{p}|missing\n".encode())
    return h.hexdigest()[:16]


def scan_split(dataset, split: str, needs: Needs, num_classes: int,
               max_pixels: int = MAX_PIXELS) -> tuple[list[str], dict[str, int]]:
    """(every problem of the split, one line each; masks found per folder)."""
    problems = list(id_problems(dataset.ids))
    if problems:  # a duplicate or path-like id: its files would be read or written twice, or elsewhere
        return [f"split {split!r} {p}" for p in problems], {}
    folders = Counter(mask_folder(dataset, i) for i in dataset.ids) if needs.masks or needs.all_masks else Counter()
    folders.pop(None, None)
    required = needs.all_masks and bool(folders)
    if needs.all_masks and not folders:
        log.warning("split %r has no ground-truth mask: it cannot be evaluated", split)
    for image_id in dataset.ids:
        problem, size = image_problem(Path(dataset.image_path(image_id)), max_pixels)
        if problem:
            problems.append(problem)
            continue
        if needs.labels:
            problem = label_problem(dataset, image_id, needs)
            if problem:
                problems.append(problem)
        if folders:
            problem = mask_problem(dataset, image_id, size, num_classes, required)
            if problem:
                problems.append(problem)
    return problems, dict(folders)


def describe(split: str, images: int, folders: dict[str, int]) -> str:
    """e.g. "train_aug: 10582 images ok; 10582 masks (SegmentationClassAug 10582)"."""
    masks = sum(folders.values())
    where = ", ".join(f"{name} {n}" for name, n in sorted(folders.items()))
    return f"{split}: {images} images ok" + (f"; {masks} masks ({where})" if masks else "")


def scan(dm, plain: dict, reads: list[str], cache_dir: str | Path | None) -> dict[str, int]:
    """Scan every split the run reads; raise DataScanError listing the problems. Returns images per split."""
    d = plain["dataset"]
    checked = {}
    for split, needs in requirements(plain, reads).items():
        dataset = dm.split(split)
        if not hasattr(dataset, "image_path"):
            continue  # not an image-folder data set: nothing this scan knows how to check
        max_pixels = int(d.get("max_pixels") or MAX_PIXELS)
        key = hashlib.sha256(json.dumps({"args": d.get("args"), "target": d.get("_target_"), "rules": SCAN_RULES,
                                         "max_pixels": max_pixels, **asdict(needs)}, sort_keys=True,
                                        default=str).encode()).hexdigest()[:10]
        cache = Path(cache_dir) / f"{d['name']}-{split}-{key}.json" if cache_dir else None
        stamp = fingerprint(dataset, needs)
        cached = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
        if cached.get("fingerprint") == stamp:
            checked[split] = len(dataset.ids)
            log.info("scanned %s/%s (cached)", d["name"], describe(split, len(dataset.ids), cached.get("masks", {})))
            continue
        problems, folders = scan_split(dataset, split, needs, dataset.num_classes, max_pixels)
        if problems:
            listed = "\n  ".join(problems[:MAX_LISTED])
            more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
            raise DataScanError(
                f"dataset {d['name']!r} split {split!r}: {len(problems)} problem{'s' * (len(problems) > 1)} in "
                f"{len(dataset.ids)} images:"
                f"\n  {listed}{more}\nFix or replace these files, or remove their ids from the split list. "
                "dataset.scan=false skips this check (the run then fails, or skips images, when it reaches them).")
        if cache is not None:
            atomic_write_json(cache, {"fingerprint": stamp, "images": len(dataset.ids), "needs": asdict(needs),
                                      "masks": folders})
        checked[split] = len(dataset.ids)
        log.info("scanned %s/%s", d["name"], describe(split, len(dataset.ids), folders))
    return checked


def scan_for_run(ctx) -> dict[str, int]:
    """The hook `tasks.run` calls once the Context is built and before any task runs."""
    if not ctx.plain["dataset"].get("scan", True) or not hasattr(ctx.dm, "split"):
        return {}
    return scan(ctx.dm, ctx.plain, ctx.data_read(), Path(ctx.plain["paths"]["runs_dir"]) / ".scan")
