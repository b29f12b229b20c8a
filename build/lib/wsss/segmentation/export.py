"""Export predictions in the layout the PASCAL VOC evaluation server expects.

The server takes an archive holding `results/VOC2012/Segmentation/comp6_test_cls/<id>.png`: one
indexed PNG per test image, pixel values 0..20 (comp5 = trained on VOC data only, comp6 = with outside
data such as ImageNet pre-training, which every run here uses).
"""
from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Sequence

from wsss.artifacts import ArtifactDir, temporary_sibling

ARCHIVES = ("tar.gz", "zip")


def server_folder(year: str = "VOC2012", competition: str = "comp6", split: str = "test") -> Path:
    """`results/<year>/Segmentation/<competition>_<split>_cls` (relative)."""
    return Path("results") / year / "Segmentation" / f"{competition}_{split}_cls"


def export_predictions(predictions_dir: str | Path, ids: Sequence[str], out_dir: str | Path, num_classes: int,
                       year: str = "VOC2012", competition: str = "comp6", split: str = "test",
                       archive: str | None = "tar.gz") -> Path:
    """Copy `<predictions_dir>/<id>.png` for every id into `<out_dir>/results/...` and archive it.

    Args:
        predictions_dir: palette PNG predictions (values 0..num_classes).
        ids: every image id of the split (all must be present: the server rejects partial results).
        out_dir: export folder; `results/` goes under it and the archive next to it.
        num_classes: foreground classes C; a prediction above C is refused.
        archive: "tar.gz", "zip" or None.

    Returns:
        The archive path (or the results folder when `archive` is None).
    """
    if archive is not None and archive not in ARCHIVES:
        raise ValueError(f"export.archive={archive!r}; expected one of {ARCHIVES} or null")
    preds = ArtifactDir(predictions_dir, ".png")
    missing = preds.missing(ids)
    if missing:
        raise FileNotFoundError(f"{preds.root}: {len(missing)} of {len(ids)} predictions are missing, e.g. "
                                f"{missing[:3]} (run tasks=[predict] on split {split!r} first)")
    out_dir = Path(out_dir)
    rel = server_folder(year, competition, split)
    dest = out_dir / rel
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for image_id in ids:
        values = preds.read_png(image_id)
        if values.max(initial=0) > num_classes:
            raise ValueError(f"{preds.path(image_id)}: prediction holds {int(values.max())}; expected 0..{num_classes}")
        shutil.copyfile(preds.path(image_id), dest / f"{image_id}.png")
    if archive is None:
        return dest
    path = out_dir / f"{competition}_{split}_cls.{archive}"
    _write_archive(out_dir, rel, path, archive, list(ids))
    return path


def _write_archive(out_dir: Path, rel: Path, path: Path, kind: str, ids: list[str]) -> None:
    """Archive `out_dir/rel/<id>.png` with member names `rel/<id>.png`; renamed into place when complete."""
    fd, tmp = temporary_sibling(path)
    os.close(fd)
    try:
        if kind == "zip":
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for image_id in ids:
                    z.write(out_dir / rel / f"{image_id}.png", str(rel / f"{image_id}.png"))
        else:
            with tarfile.open(tmp, "w:gz") as t:
                for image_id in ids:
                    t.add(out_dir / rel / f"{image_id}.png", str(rel / f"{image_id}.png"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def archive_members(path: str | Path) -> list[str]:
    """Member file names of an export archive (for checks)."""
    path = Path(path)
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            return sorted(n for n in z.namelist() if not n.endswith("/"))
    with tarfile.open(path) as t:
        return sorted(m.name for m in t.getmembers() if m.isfile())
