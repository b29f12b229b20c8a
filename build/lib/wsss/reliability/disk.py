"""Fail before a predict pass that cannot fit on the disk, with the estimate in the message.

Estimate, in order of preference:
1. files already in the folder (a resumed pass): their mean size × the images left;
2. otherwise from the images: mean pixel count of up to `sample` image headers × the planes each
   artifact holds × bytes per value. An `.npz` of CAMs holds one float16 plane per present class
   (plus one, for the background plane of random-walk maps), so planes come from the labels; a
   PNG holds one byte per pixel at most (compression only makes it smaller).
The check passes when free space ≥ estimate × (1 + margin) + reserve.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from PIL import Image

GiB = 1024**3


def _mean_pixels(dataset, ids: Sequence[str], sample: int) -> float:
    step = max(1, len(ids) // sample)
    sizes = []
    for image_id in list(ids)[::step][:sample]:
        with Image.open(dataset.image_path(image_id)) as im:  # header only
            w, h = im.size
        sizes.append(w * h)
    return sum(sizes) / max(1, len(sizes))


def estimate_artifact_bytes(dataset, ids: Sequence[str], suffix: str, folder: str | Path | None = None,
                            sample: int = 16) -> int:
    """Bytes that writing one artifact per id of `ids` will take."""
    ids = list(ids)
    if not ids:
        return 0
    if folder is not None and Path(folder).is_dir():
        done = [p.stat().st_size for p in Path(folder).glob(f"*{suffix}")]
        if len(done) >= 3:
            return int(sum(done) / len(done) * len(ids))
    pixels = _mean_pixels(dataset, ids, sample)
    if suffix == ".npz":
        planes = sum(int(dataset.label(i).sum()) + 1 for i in ids)
        return int(pixels * planes * 2) + 1024 * len(ids)  # float16 values + zip headers
    return int(pixels * len(ids))


def check_free_space(folder: str | Path, needed: int, what: str, margin: float = 0.05,
                     reserve: int = 64 * 1024**2) -> None:
    """Raise OSError when the file system of `folder` has less than needed × (1+margin) + reserve free."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    want = int(needed * (1 + margin)) + reserve
    if free < want:
        raise OSError(f"{folder}: {what} needs about {needed / GiB:.2f} GiB (+{margin:.0%} and "
                      f"{reserve / 1024**2:.0f} MiB reserve) but only {free / GiB:.2f} GiB are free on that file "
                      "system; free some space or point paths.runs_dir at a larger disk")


def check_disk_for_predict(writer, dataset, ids: Sequence[str]) -> int:
    """The predict task's check before writing `ids` into the ArtifactDir `writer`; returns the estimate."""
    needed = estimate_artifact_bytes(dataset, ids, writer.suffix, writer.root)
    check_free_space(writer.root, needed, f"writing {len(ids)} {writer.suffix} artifacts")
    return needed
