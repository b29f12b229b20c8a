"""Pascal VOC 2012 + SBD: the VOCdevkit folder `dataset=voc12` reads, SegmentationClassAug/ and train_aug.

    python -m wsss.data.prepare voc12 --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz \
        --out data/VOCdevkit/VOC2012

1. both archives are checked against their official md5 (`--voc-md5` / `--sbd-md5` name another, `--no-verify`
   skips the check);
2. the VOC tar's `VOCdevkit/VOC2012/` is extracted into `--out`;
3. SBD's `benchmark_RELEASE/dataset/` is read as a stream: its `train.txt` and `val.txt` go to `<out>/SBD/`,
   each `cls/<id>.mat` (struct GTcls, field Segmentation: class indices 0..20) becomes the palette PNG
   `SegmentationClassAug/<id>.png` unless VOC has a mask of its own for the image or the image is in VOC's
   val, and `img/<id>.jpg` fills in an image VOC lacks;
4. `ImageSets/Segmentation/train_aug.txt` = (VOC train ∪ SBD train ∪ SBD val) − VOC val, sorted; every id
   there gets a SegmentationClassAug/ mask: VOC's own SegmentationClass/<id>.png (void 255 borders kept)
   where VOC has one, SBD's otherwise.
The loaders read a train_aug mask from SegmentationClassAug/, val's from SegmentationClass/
(wsss/data/voc.py).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path, PurePosixPath

import numpy as np

from wsss.artifacts import atomic_write_bytes, atomic_write_text, encode_png
from wsss.data.prepare import archives
from wsss.data.prepare.archives import Archive, PrepareError

VOC = Archive("VOCtrainval_11-May-2012.tar",
              "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
              "6cd6e144f989b92b3379bac3b3de84fd", "--voc")
SBD = Archive("benchmark.tgz", "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
                              "semantic_contours/benchmark.tgz",
              "82b4d87ceb2ed10f6038a1cba92111cb", "--sbd")
VOC_PREFIX = "VOCdevkit/VOC2012"
SBD_PREFIX = "benchmark_RELEASE/dataset"
NUM_CLASSES = 20
SEGMENTATION = Path("ImageSets/Segmentation")


def default_out() -> Path:
    return Path(os.environ.get("WSSS_DATA") or "data") / "VOCdevkit" / "VOC2012"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voc", help=f"path of {VOC.filename} ({VOC.url})")
    parser.add_argument("--sbd", help=f"path of SBD's {SBD.filename} ({SBD.url})")
    parser.add_argument("--out", type=Path, default=None,
                        help="the VOC2012 folder to write (dataset.args.root); default "
                             "$WSSS_DATA/VOCdevkit/VOC2012, else data/VOCdevkit/VOC2012")
    parser.add_argument("--voc-md5", help=f"expected md5 of --voc instead of the official {VOC.md5}")
    parser.add_argument("--sbd-md5", help=f"expected md5 of --sbd instead of the official {SBD.md5}")
    parser.add_argument("--no-verify", action="store_true", help="do not check the archives' md5")
    parser.add_argument("--masks-from", choices=("voc", "sbd"), default="voc",
                        help="the annotation SegmentationClassAug/ holds for a train_aug image both VOC and "
                             "SBD annotate: VOC's own mask, void borders kept (default), or SBD's")


# -- SBD ---------------------------------------------------------------------------------------------------
def sbd_segmentation(data: bytes, name: str) -> np.ndarray:
    """The class-index mask of one SBD `cls/<id>.mat` (GTcls.Segmentation), checked."""
    from scipy.io import loadmat

    try:
        gt = loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)["GTcls"]
        seg = np.asarray(gt.Segmentation)
    except (KeyError, AttributeError, ValueError, TypeError) as e:
        raise PrepareError(f"{name}: not an SBD class mask (expected a struct GTcls with a field "
                           f"Segmentation: {type(e).__name__}: {e})") from None
    values = np.unique(seg)
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer) or (
            values[(values != 255)] > NUM_CLASSES).any() or (values < 0).any():
        raise PrepareError(f"{name}: GTcls.Segmentation must be a 2-D integer array of 0..{NUM_CLASSES} "
                           f"(255 void), got {seg.dtype} {seg.shape} with values {values[:10].tolist()}")
    return seg.astype(np.uint8)


def read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise PrepareError(f"{path}: id list is missing (an incomplete extraction? run the command again)")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def convert_sbd(sbd: Path, out: Path, masks_from: str = "voc") -> dict[str, int]:
    """One pass over SBD's archive: its lists, its class masks VOC does not cover, the images VOC lacks."""
    voc_val = set(read_ids(out / SEGMENTATION / "val.txt"))
    counts = {"masks written": 0, "masks kept": 0, "images added": 0}
    for info, tar in archives.members(sbd):
        rel = archives.relative_member(info.name, SBD_PREFIX)
        if rel is None:
            continue
        if rel.name in ("train.txt", "val.txt") and len(rel.parts) == 1:
            archives.write_member(tar, info, out / "SBD" / rel.name)
        elif rel.parts[0] == "cls" and rel.suffix == ".mat":
            counts[convert_mask(tar, info, rel, out, voc_val, masks_from)] += 1
        elif rel.parts[0] == "img" and rel.suffix == ".jpg" and not (out / "JPEGImages" / rel.name).is_file():
            counts["images added"] += archives.write_member(tar, info, out / "JPEGImages" / rel.name)
    return counts


def convert_mask(tar, info, rel: PurePosixPath, out: Path, voc_val: set[str], masks_from: str) -> str:
    image_id = rel.stem
    target = out / "SegmentationClassAug" / f"{image_id}.png"
    voc_has_it = (out / "SegmentationClass" / f"{image_id}.png").is_file()
    if image_id in voc_val or (voc_has_it and masks_from == "voc") or target.is_file():
        return "masks kept"
    seg = sbd_segmentation(tar.extractfile(info).read(), f"{SBD.filename}:{info.name}")
    atomic_write_bytes(target, encode_png(seg, palette=True))
    return "masks written"


# -- train_aug -----------------------------------------------------------------------------------------------
def train_aug_ids(voc_train: list[str], voc_val: list[str], sbd_train: list[str],
                  sbd_val: list[str]) -> list[str]:
    """The community's train_aug: VOC train ∪ SBD train ∪ SBD val, minus VOC val (sorted)."""
    return sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))


def complete_aug_masks(out: Path, ids: list[str]) -> int:
    """VOC's own mask copied into SegmentationClassAug/ for the train_aug ids that have one; the count."""
    copied = 0
    for image_id in ids:
        voc, aug = (out / d / f"{image_id}.png" for d in ("SegmentationClass", "SegmentationClassAug"))
        if voc.is_file() and not aug.is_file():
            atomic_write_bytes(aug, voc.read_bytes())
            copied += 1
    return copied


def check_complete(out: Path, ids: list[str]) -> None:
    problems = [f"{out / 'SegmentationClassAug' / f'{i}.png'}: no mask" for i in ids
                if not (out / "SegmentationClassAug" / f"{i}.png").is_file()]
    problems += [f"{out / 'JPEGImages' / f'{i}.jpg'}: no image" for i in ids
                 if not (out / "JPEGImages" / f"{i}.jpg").is_file()]
    if problems:
        raise PrepareError(f"{len(problems)} files of train_aug are missing after the conversion, e.g.\n  "
                           + "\n  ".join(problems[:5]) + "\nAre both archives the official ones?")


# -- the command ---------------------------------------------------------------------------------------------
def remove_temporaries(out: Path) -> int:
    """Temporary files of a killed run (`.<name>.<random>.tmp`, never renamed into place)."""
    stale = [p for d in ("JPEGImages", "SegmentationClassAug", "SegmentationClass", "Annotations", "SBD")
             if (out / d).is_dir() for p in (out / d).glob(".*.tmp")]
    for p in stale:
        p.unlink()
    return len(stale)


def id_lists(out: Path) -> dict[str, list[str]]:
    return {name: read_ids(path) for name, path in (("voc_train", out / SEGMENTATION / "train.txt"),
                                                    ("voc_val", out / SEGMENTATION / "val.txt"),
                                                    ("sbd_train", out / "SBD" / "train.txt"),
                                                    ("sbd_val", out / "SBD" / "val.txt"))}


def sbd_masks_missing(out: Path) -> bool:
    """Whether a train_aug id outside VOC's annotated images lacks its mask (deleted since the last run)."""
    try:
        lists = id_lists(out)
    except PrepareError:
        return True
    return any(not (out / "SegmentationClassAug" / f"{i}.png").is_file() and
               not (out / "SegmentationClass" / f"{i}.png").is_file() for i in train_aug_ids(**lists))


def check_mask_rule(out: Path, masks_from: str) -> None:
    """SegmentationClassAug/ holds one rule's masks: a rerun with the other one is refused, not mixed in."""
    rule = out / archives.STATE_DIR / "masks_from"
    if rule.is_file() and rule.read_text().strip() != masks_from:
        made = rule.read_text().strip()
        raise PrepareError(f"{out / 'SegmentationClassAug'} was made with --masks-from {made}; "
                           f"to switch to --masks-from {masks_from}, delete that folder and {rule} first")
    if not rule.is_file():
        atomic_write_text(rule, masks_from + "\n")


def check_archives(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    found, errors = {}, []
    for archive, given, md5 in ((VOC, args.voc, args.voc_md5), (SBD, args.sbd, args.sbd_md5)):
        try:
            found[archive.filename] = archives.checked_archive(archive, given, md5, not args.no_verify, out)
        except PrepareError as e:
            errors.append(str(e))
    if errors:
        raise PrepareError("\n\n".join(errors))
    return found[VOC.filename], found[SBD.filename]


def prepare(args: argparse.Namespace) -> dict:
    out = (args.out or default_out()).expanduser().resolve()
    voc, sbd = check_archives(args, out)
    report = {"root": out, "temporaries removed": remove_temporaries(out) if out.is_dir() else 0}
    if archives.is_done(out, "voc2012", archives.archive_identity(voc)):
        report["VOC"] = "already extracted"
    else:
        written, kept = archives.extract(voc, VOC_PREFIX, out)
        if not (out / SEGMENTATION / "train.txt").is_file():
            raise PrepareError(f"{voc}: no {VOC_PREFIX}/{SEGMENTATION}/train.txt inside; is it the VOC2012 "
                               "trainval tar?")
        archives.mark_done(out, "voc2012", archives.archive_identity(voc))
        report["VOC"] = f"{written} files extracted, {kept} already there"
    check_mask_rule(out, args.masks_from)
    identity = f"{archives.archive_identity(sbd)}|masks-from={args.masks_from}"
    if archives.is_done(out, "sbd", identity) and not sbd_masks_missing(out):
        report["SBD"] = "already converted"
    else:
        counts = convert_sbd(sbd, out, args.masks_from)
        archives.mark_done(out, "sbd", identity)
        report["SBD"] = ", ".join(f"{v} {k}" for k, v in counts.items())
    lists = id_lists(out)
    ids = train_aug_ids(**lists)
    report["VOC masks copied into SegmentationClassAug"] = complete_aug_masks(out, ids)
    check_complete(out, ids)
    listed = out / SEGMENTATION / "train_aug.txt"
    if not listed.is_file() or listed.read_text() != "\n".join(ids) + "\n":  # unchanged: no new mtime
        atomic_write_text(listed, "\n".join(ids) + "\n")
    report["train_aug"] = len(ids)
    report["lists"] = {k: len(v) for k, v in lists.items()}
    return report


def print_report(report: dict) -> None:
    out = report["root"]
    lists = report["lists"]
    print(f"Pascal VOC 2012 + SBD in {out}")
    print(f"  VOC2012 tar: {report['VOC']}")
    print(f"  SBD: {report['SBD']}; its lists in {out / 'SBD'} (train {lists['sbd_train']}, "
          f"val {lists['sbd_val']})")
    aug = out / "SegmentationClassAug"
    copied = report["VOC masks copied into SegmentationClassAug"]
    print(f"  {aug}: {len(list(aug.glob('*.png')))} palette PNGs ({copied} copied from SegmentationClass "
          "now)")
    print(f"  {out / SEGMENTATION / 'train_aug.txt'}: {report['train_aug']} ids = (VOC train "
          f"{lists['voc_train']} ∪ SBD train ∪ SBD val) − VOC val {lists['voc_val']}")
    if report["temporaries removed"]:
        print(f"  {report['temporaries removed']} temporary files of an interrupted run removed")
    print(f"Use it with: python run.py dataset=voc12 dataset.args.root={out}")


def main(args: argparse.Namespace) -> int:
    try:
        print_report(prepare(args))
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
