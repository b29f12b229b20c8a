"""Pascal VOC 2007: the VOCdevkit folder `dataset=voc07` reads (classification splits of ImageSets/Main).

    python -m wsss.data.prepare voc07 --trainval VOCtrainval_06-Nov-2007.tar --test VOCtest_06-Nov-2007.tar \
        --out data/VOCdevkit/VOC2007

Both tars are checked against their official md5 (`--trainval-md5` / `--test-md5` name another, `--no-verify`
skips the check) and their `VOCdevkit/VOC2007/` is extracted into `--out`: JPEGImages/, Annotations/ (the
labels the loader reads), ImageSets/Main/{train,val,trainval,test}.txt, and VOC's few segmentation masks.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wsss.data.prepare import archives
from wsss.data.prepare.archives import Archive, PrepareError

TRAINVAL = Archive("VOCtrainval_06-Nov-2007.tar",
                   "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
                   "c52e279531787c972589f7e41ab4ae64", "--trainval")
TEST = Archive("VOCtest_06-Nov-2007.tar",
               "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
               "b6e924de25625d8de591ea690078ad9f", "--test")
PREFIX = "VOCdevkit/VOC2007"
SPLITS = ("train", "val", "trainval", "test")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trainval", help=f"path of {TRAINVAL.filename} ({TRAINVAL.url})")
    parser.add_argument("--test", help=f"path of {TEST.filename} ({TEST.url})")
    parser.add_argument("--out", type=Path, default=None,
                        help="the VOC2007 folder to write (dataset.args.root); default "
                             "$WSSS_DATA/VOCdevkit/VOC2007, else data/VOCdevkit/VOC2007")
    parser.add_argument("--trainval-md5",
                        help=f"expected md5 of --trainval instead of the official {TRAINVAL.md5}")
    parser.add_argument("--test-md5", help=f"expected md5 of --test instead of the official {TEST.md5}")
    parser.add_argument("--no-verify", action="store_true", help="do not check the archives' md5")


def prepare(args: argparse.Namespace) -> dict:
    out = args.out or Path(os.environ.get("WSSS_DATA") or "data") / "VOCdevkit" / "VOC2007"
    out = out.expanduser().resolve()
    found, errors = [], []
    inputs = ((TRAINVAL, args.trainval, args.trainval_md5), (TEST, args.test, args.test_md5))
    for archive, given, md5 in inputs:
        try:
            found.append((archive, archives.checked_archive(archive, given, md5, not args.no_verify, out)))
        except PrepareError as e:
            errors.append(str(e))
    if errors:
        raise PrepareError("\n\n".join(errors))
    report = {"root": out}
    for archive, path in found:
        step = archive.filename.split("_")[0].lower()
        if archives.is_done(out, step, archives.archive_identity(path)):
            report[archive.filename] = "already extracted"
            continue
        written, kept = archives.extract(path, PREFIX, out)
        if written + kept == 0:
            raise PrepareError(f"{path}: nothing under {PREFIX}/ inside; is it {archive.filename}?")
        archives.mark_done(out, step, archives.archive_identity(path))
        report[archive.filename] = f"{written} files extracted, {kept} already there"
    missing = [s for s in SPLITS if not (out / "ImageSets" / "Main" / f"{s}.txt").is_file()]
    if missing:
        raise PrepareError(f"{out / 'ImageSets' / 'Main'}: split lists {missing} are missing after "
                           "extraction; are both archives the official ones?")
    report["splits"] = {s: len((out / "ImageSets" / "Main" / f"{s}.txt").read_text().split()) for s in SPLITS}
    return report


def main(args: argparse.Namespace) -> int:
    try:
        report = prepare(args)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = report["root"]
    print(f"Pascal VOC 2007 in {out}")
    for archive in (TRAINVAL, TEST):
        print(f"  {archive.filename}: {report[archive.filename]}")
    counts = ", ".join(f"{s} {n} ids" for s, n in report["splits"].items())
    print(f"  {counts} in {out / 'ImageSets/Main'}")
    print(f"Use it with: python run.py dataset=voc07 dataset.args.root={out}")
    return 0
