"""A cheap up-front scan of the splits a run will read, so bad data fails in seconds, not hours.

What each split needs follows from the tasks (`requirements`):
- every scanned split: each image exists and is a complete image file (PIL `verify`, which checks
  PNG chunk CRCs; for JPEG the end-of-image marker must be present, which catches truncation);
- the train split of `fit`: a non-empty label set per image (a weakly supervised stage learns
  from image-level labels only; an unlabelled image would otherwise be dropped silently);
- the eval splits of an `evaluate` task: every image has a mask of the image's size, holding only
  0..num_classes and 255. A split with no mask at all is left alone (the evaluate task says so and
  skips it); one with some masks missing is an error.

Images are never decoded (header + verify); masks of the splits that need them are decoded once.
A scan that passed is cached in `<cache_dir>/<dataset>-<split>-<key>.json` with a fingerprint of
every file's size and mtime, so the next run of any stage on unchanged data skips it. Annotation
(XML) edits are not part of the fingerprint. `dataset.scan=false` turns the whole scan off.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.artifacts import atomic_write_json

log = logging.getLogger(__name__)

JPEG_EOI = b"\xff\xd9"
MAX_LISTED = 10


class DataScanError(ValueError):
    """The data set has files a run would fail on (or silently skip)."""


@dataclass(frozen=True)
class Needs:
    labels: bool = False  # a non-empty label set per image
    masks: bool = False   # a mask per image, of the image's size, values in 0..C or 255


def requirements(plain: dict, tasks: list[str]) -> dict[str, Needs]:
    """Which splits this run reads, and what it needs from each."""
    d, stage = plain["dataset"], plain["stage"]
    needs: dict[str, Needs] = {}

    def add(split, **kw):
        old = needs.get(split, Needs())
        needs[split] = Needs(**{k: getattr(old, k) or kw.get(k, False) for k in ("labels", "masks")})

    if "fit" in tasks:
        add(d["train_split"], labels=True)
        add(d["val_split"])
    if any(t.startswith("predict") for t in tasks):
        for s in stage.get("predict_splits") or d.get("predict_splits") or []:
            add(s)
    if any("evaluate" in t for t in tasks):
        for s in stage.get("eval_splits") or d.get("eval_splits") or []:
            add(s, masks=True)
    return needs


# -- one file ---------------------------------------------------------------------------------------
def image_problem(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(what is wrong with the image file or None, its (height, width))."""
    if not path.is_file():
        return f"{path}: image file is missing", None
    try:
        with Image.open(path) as im:
            w, h = im.size
            fmt = im.format
            im.verify()
    except Exception as e:  # PIL raises many types for broken files
        return f"{path}: corrupt or truncated image ({type(e).__name__}: {e})", None
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 256))
            if JPEG_EOI not in f.read():
                return f"{path}: truncated JPEG (no end-of-image marker)", None
    return None, (h, w)


def mask_problem(dataset, image_id: str, size: tuple[int, int], num_classes: int) -> str | None:
    path = dataset.mask_path(image_id)
    try:
        mask = dataset.load_mask(image_id)
    except (OSError, ValueError) as e:
        return str(e)
    if mask is None:
        return f"{path}: mask of {image_id!r} is missing (needed to evaluate this split)"
    if mask.shape != size:
        return f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} but its image is {size[0]}x{size[1]} (HxW)"
    values = np.unique(mask)
    bad = values[(values > num_classes) & (values != 255)]
    if bad.size:
        return (f"{path}: mask values {bad.tolist()[:8]} are outside 0..{num_classes} (classes + background) "
                "and 255 (ignore)")
    return None


# -- one split --------------------------------------------------------------------------------------
def fingerprint(dataset, needs: Needs) -> str:
    h = hashlib.sha256()
    for image_id in dataset.ids:
        paths = [dataset.image_path(image_id)]
        if needs.masks and dataset.mask_path(image_id) is not None:
            paths.append(dataset.mask_path(image_id))
        for p in paths:
            try:
                st = p.stat()
                h.update(f"{image_id}|{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{image_id}|{p}|missing\n".encode())
    return h.hexdigest()[:16]


def scan_split(dataset, split: str, needs: Needs, num_classes: int) -> list[str]:
    """Every problem of the split, one line each."""
    problems = []
    with_masks = needs.masks and any(
        dataset.mask_path(i) is not None and dataset.mask_path(i).is_file() for i in dataset.ids)
    if needs.masks and not with_masks:
        log.warning("split %r has no ground-truth mask: it cannot be evaluated", split)
    for image_id in dataset.ids:
        problem, size = image_problem(Path(dataset.image_path(image_id)))
        if problem:
            problems.append(problem)
            continue
        if needs.labels:
            try:
                if float(np.asarray(dataset.label(image_id)).sum()) == 0:
                    problems.append(f"{dataset.image_path(image_id)}: image {image_id!r} has an empty label set; "
                                    "training on image-level labels needs at least one class per image")
            except (OSError, ValueError) as e:
                problems.append(str(e))
        if with_masks:
            problem = mask_problem(dataset, image_id, size, num_classes)
            if problem:
                problems.append(problem)
    return problems


def scan(dm, plain: dict, tasks: list[str], cache_dir: str | Path | None) -> dict[str, int]:
    """Scan every split the run reads; raise DataScanError listing the problems. Returns images per split."""
    d = plain["dataset"]
    checked = {}
    for split, needs in requirements(plain, tasks).items():
        dataset = dm.split(split)
        if not hasattr(dataset, "image_path"):
            continue  # not an image-folder data set: nothing this scan knows how to check
        key = hashlib.sha256(json.dumps({"args": d.get("args"), "target": d.get("_target_"), **asdict(needs)},
                                        sort_keys=True, default=str).encode()).hexdigest()[:10]
        cache = Path(cache_dir) / f"{d['name']}-{split}-{key}.json" if cache_dir else None
        stamp = fingerprint(dataset, needs)
        if cache is not None and cache.is_file() and json.loads(cache.read_text()).get("fingerprint") == stamp:
            checked[split] = len(dataset.ids)
            continue
        problems = scan_split(dataset, split, needs, dataset.num_classes)
        if problems:
            listed = "\n  ".join(problems[:MAX_LISTED])
            more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
            raise DataScanError(
                f"dataset {d['name']!r} split {split!r}: {len(problems)} of {len(dataset.ids)} images have problems:"
                f"\n  {listed}{more}\nFix or replace these files, or remove their ids from the split list. "
                "dataset.scan=false skips this check (the run then fails, or skips images, when it reaches them).")
        if cache is not None:
            atomic_write_json(cache, {"fingerprint": stamp, "images": len(dataset.ids), "needs": asdict(needs)})
        checked[split] = len(dataset.ids)
        log.info("scanned %s/%s: %d images ok", d["name"], split, len(dataset.ids))
    return checked


def scan_for_run(ctx) -> dict[str, int]:
    """The hook `tasks.run` calls once the Context is built and before any task runs."""
    if not ctx.plain["dataset"].get("scan", True) or not hasattr(ctx.dm, "split"):
        return {}
    return scan(ctx.dm, ctx.plain, ctx.tasks(), Path(ctx.plain["paths"]["runs_dir"]) / ".scan")
