"""MS COCO 2014 for WSSS: images, instances JSONs, the benchmark's index masks and id lists.

    python -m wsss.data.prepare coco14 --train-images train2014.zip --val-images val2014.zip \\
        --annotations annotations_trainval2014.zip --out data/coco14

Each input is the official archive or what it unpacks to (an image folder; a folder holding the
`instances_<split>.json` files, or those files). The tree written under `--out` is what
`conf/dataset/coco14.yaml` reads:

    train2014/COCO_train2014_<12-digit id>.jpg   val2014/COCO_val2014_<12-digit id>.jpg
    annotations/instances_train2014.json         annotations/instances_val2014.json
    coco_seg_anno/<12-digit id>.png              one index mask per image of both splits
    train2014.txt  val2014.txt                   the images holding at least one annotation

Masks follow the COCO14 WSSS benchmark's convention: 0 = background, class k + 1 for the k-th of the 80
categories sorted by their (non-contiguous) COCO ids, painted from every annotation of the image in the
JSON's order, so where instances overlap the later one wins; crowd regions (`iscrowd=1`, RLE) are painted
with their class (`--crowd ignore` writes 255 there instead). An image without annotations gets an all-zero
mask. Archives are checked against the official MD5 sums; every file is written atomically and a rerun
redoes only what is missing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import zipfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from wsss.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text, encode_png

SPLITS = ("train2014", "val2014")
MASKS = "coco_seg_anno"
IGNORE = 255
#: the official archives: name -> (URL, MD5, size as published)
ARCHIVES = {
    "train2014.zip": ("http://images.cocodataset.org/zips/train2014.zip",
                      "0da8c0bd3d6becc4dcb32757491aca88", "13 GB"),
    "val2014.zip": ("http://images.cocodataset.org/zips/val2014.zip",
                    "a3d79f5ed8d289b7a7554ce06a5782b3", "6.2 GB"),
    "annotations_trainval2014.zip": ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                                     "0a379cfc70b0e71301e0f377548639bd", "241 MB"),
}
#: images of the released splits, and those holding at least one annotation (the WSSS benchmark's lists)
EXPECTED = {"train2014": (82_783, 82_081), "val2014": (40_504, 40_137)}


class PrepareError(ValueError):
    """An input is missing or is not what the COCO 2014 release holds."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (__doc__ or "").split("\n\n")[0]
    parser.add_argument("--train-images", type=Path, help="train2014.zip or the train2014/ folder")
    parser.add_argument("--val-images", type=Path, help="val2014.zip or the val2014/ folder")
    parser.add_argument("--annotations", type=Path, nargs="+",
                        help="annotations_trainval2014.zip, a folder holding instances_{train,val}2014.json, "
                             "or those two files")
    parser.add_argument("--out", type=Path, required=True, help="the data set folder (dataset.args.root)")
    parser.add_argument("--crowd", choices=("class", "ignore"), default="class",
                        help="crowd regions in the masks: their class (the benchmark's masks) or 255")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing masks")
    parser.add_argument("--skip-checksum", action="store_true", help="do not check the archives' MD5 sums")


def main(args: argparse.Namespace) -> int:
    missing = [flag for flag, value in (("--train-images", args.train_images), ("--val-images", args.val_images),
                                        ("--annotations", args.annotations)) if not value]
    if missing:
        print(f"missing {', '.join(missing)}; the official downloads are:\n{download_help()}", file=sys.stderr)
        return 2
    try:
        prepare(args.out, {"train2014": args.train_images, "val2014": args.val_images}, args.annotations,
                crowd=args.crowd, workers=args.workers, check=not args.skip_checksum)
    except (PrepareError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def download_help() -> str:
    return "\n".join(f"  {name:30s} {url}\n  {'':30s} md5 {md5}, {size}" for name, (url, md5, size) in
                     ARCHIVES.items())


def prepare(out: Path, images: dict[str, Path], annotations: list[Path], crowd: str = "class",
            workers: int = 1, check: bool = True) -> dict[str, dict[str, int]]:
    """Write the tree under `out`; returns {split: {"images": n, "listed": m, "masks_written": k}}."""
    out.mkdir(parents=True, exist_ok=True)
    for split, source in images.items():
        place_images(Path(source), out / split, split, check)
    place_annotations([Path(a) for a in annotations], out / "annotations", check)
    report = {}
    for split in SPLITS:
        data = load_json(out / "annotations" / f"instances_{split}.json")
        report[split] = write_split(out, split, data, crowd, workers)
        print(f"{split}: {report[split]['images']} images, {report[split]['listed']} with annotations in "
              f"{out / (split + '.txt')}; {report[split]['masks_written']} masks written to {out / MASKS}")
    return report


# -- inputs ---------------------------------------------------------------------------------------------------
def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def check_archive(path: Path, out: Path) -> None:
    """Compare an official archive's MD5 with the published one (once: the result is remembered by size and
    mtime in `<out>/.checked/`)."""
    if path.name not in ARCHIVES:
        return
    url, expected, _ = ARCHIVES[path.name]
    st = path.stat()
    stamp = out / ".checked" / f"{path.name}.json"
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": expected}
    if stamp.is_file() and json.loads(stamp.read_text()) == key:
        return
    print(f"checking the MD5 of {path} ...", flush=True)
    actual = md5_of(path)
    if actual != expected:
        raise PrepareError(f"{path}: MD5 {actual}, but the official {path.name} ({url}) has {expected}; "
                           "the download is incomplete or damaged (--skip-checksum to use it anyway)")
    atomic_write_json(stamp, key)


def extract_members(archive: Path, wanted, destination) -> int:
    """Extract the members `wanted(name)` accepts to `destination(name)`, each atomically; a file already there
    with the member's size is kept. Returns how many were written."""
    written = 0
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if info.is_dir() or not wanted(info.filename):
                    continue
                target = destination(info.filename)
                if target.is_file() and target.stat().st_size == info.file_size:
                    continue
                atomic_write_bytes(target, z.read(info))
                written += 1
    except zipfile.BadZipFile as e:
        raise PrepareError(f"{archive}: not a readable zip archive ({e})") from None
    return written


def place_images(source: Path, target: Path, split: str, check: bool) -> None:
    if not source.exists():
        raise FileNotFoundError(f"{source}: image archive or folder of {split} is missing; download "
                                f"{ARCHIVES[split + '.zip'][0]} (md5 {ARCHIVES[split + '.zip'][1]})")
    if source.is_dir():
        if source.resolve() != target.resolve():
            if target.is_symlink() and target.resolve() == source.resolve():
                return
            if target.exists():
                raise PrepareError(f"{target} exists and is not {source}; remove it or pass it as the input")
            target.symlink_to(source.resolve(), target_is_directory=True)
            print(f"{target} -> {source.resolve()}")
        return
    if check:
        check_archive(source, target.parent)
    prefix = f"{split}/"
    n = extract_members(source, lambda name: name.startswith(prefix) and name.endswith(".jpg"),
                        lambda name: target / name[len(prefix):])
    print(f"{target}: {n} images extracted from {source}")


def place_annotations(sources: list[Path], target: Path, check: bool) -> None:
    names = {f"instances_{s}.json" for s in SPLITS}
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"{source}: annotations are missing; download "
                                    f"{ARCHIVES['annotations_trainval2014.zip'][0]} "
                                    f"(md5 {ARCHIVES['annotations_trainval2014.zip'][1]})")
        if source.is_dir():
            for name in names:
                if (source / name).is_file():
                    copy_file(source / name, target / name)
        elif source.suffix == ".json":
            if source.name not in names:
                raise PrepareError(f"{source}: expected one of {sorted(names)}")
            copy_file(source, target / source.name)
        else:
            if check:
                check_archive(source, target.parent)
            extract_members(source, lambda n: Path(n).name in names, lambda n: target / Path(n).name)
    absent = [n for n in sorted(names) if not (target / n).is_file()]
    if absent:
        raise FileNotFoundError(f"{', '.join(str(target / n) for n in absent)}: not found in "
                                f"{', '.join(map(str, sources))} (annotations_trainval2014.zip holds them)")


def copy_file(source: Path, target: Path) -> None:
    if source.resolve() == target.resolve():
        return
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PrepareError(f"{path}: not a valid COCO instances JSON ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise PrepareError(f"{path}: a COCO instances JSON needs a {key!r} list")
    return data


# -- masks ----------------------------------------------------------------------------------------------------
def class_index(categories: list[dict]) -> dict[int, int]:
    """COCO category id -> mask value: 1 + the position of the id among the sorted ids."""
    return {cid: k + 1 for k, cid in enumerate(sorted(int(c["id"]) for c in categories))}


def binary_mask(segmentation, height: int, width: int) -> np.ndarray:
    """The (H, W) uint8 0/1 mask of one annotation: polygons, uncompressed RLE or compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):          # polygons [[x0, y0, x1, y1, ...], ...]
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):   # uncompressed RLE (crowd regions)
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def paint(image: dict, annotations: list[dict], index: dict[int, int], crowd: str) -> np.ndarray:
    """The index mask of one image (see the module's docstring for the convention)."""
    h, w = int(image["height"]), int(image["width"])
    mask = np.zeros((h, w), np.uint8)
    for ann in annotations:
        region = binary_mask(ann["segmentation"], h, w)
        if region.shape != (h, w):
            raise PrepareError(f"annotation {ann.get('id')} of image {image['id']} is {region.shape[0]}x"
                               f"{region.shape[1]}, but the image is {h}x{w}")
        mask[region > 0] = IGNORE if ann.get("iscrowd") and crowd == "ignore" else index[int(ann["category_id"])]
    return mask


def _write_mask(job: tuple) -> bool:
    image, annotations, index, crowd, path = job
    if Path(path).is_file():
        return False
    atomic_write_bytes(path, encode_png(paint(image, annotations, index, crowd)))
    return True


def write_split(out: Path, split: str, data: dict, crowd: str, workers: int) -> dict[str, int]:
    index = class_index(data["categories"])
    by_image: dict[int, list[dict]] = {int(im["id"]): [] for im in data["images"]}
    for ann in data["annotations"]:
        if int(ann["category_id"]) not in index:
            raise PrepareError(f"instances_{split}.json: annotation {ann.get('id')} has category_id "
                               f"{ann['category_id']}, which is not in its categories")
        if int(ann["image_id"]) not in by_image:
            raise PrepareError(f"instances_{split}.json: annotation {ann.get('id')} refers to image_id "
                               f"{ann['image_id']}, which is not in its images")
        by_image[int(ann["image_id"])].append(ann)
    masks = out / MASKS
    check_convention(masks, crowd)
    jobs = [(im, by_image[int(im["id"])], index, crowd, str(masks / f"{int(im['id']):012d}.png"))
            for im in data["images"]]
    if workers > 1 and len(jobs) > 64:
        with Pool(workers) as pool:
            written = sum(pool.imap_unordered(_write_mask, jobs, chunksize=64))
    else:
        written = sum(map(_write_mask, jobs))
    listed = sorted(i for i, anns in by_image.items() if anns)
    atomic_write_text(out / f"{split}.txt", "".join(f"{i:012d}\n" for i in listed))
    return {"images": len(jobs), "listed": len(listed), "masks_written": written}


def check_convention(masks: Path, crowd: str) -> None:
    """Masks of one folder follow one convention: a rerun with another `--crowd` is refused."""
    stamp = masks / "convention.json"
    convention = {"background": 0, "classes": "1 + position among the sorted category ids",
                  "overlap": "later annotation of the JSON wins", "crowd": crowd}
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        if old != convention:
            raise PrepareError(f"{stamp}: the masks there were written with crowd={old.get('crowd')!r}, not "
                               f"{crowd!r}; remove {masks} to write them again")
        return
    masks.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, convention)
