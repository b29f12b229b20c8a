"""Fill an artifact folder: write the files it lacks, then its manifest, last.

Every task that writes artifacts ends the same way (`finish`): no id of the split may be left without its
file, and only then is the manifest written, so that no later step takes a folder in part for a finished one.
`fill` is the whole loop of the folders computed from other folders on one process (affinity labels, pseudo
masks, pseudo saliency): the files of another producer go, each missing file is computed by `fn` in the
ordered process pool (wsss/ops/pool.py), written as it comes back, and the manifest closes the folder.
The predict task runs the same steps over the ranks of a Lightning trainer (wsss/tasks.py `predict_missing`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import numpy as np

from wsss.artifacts import ArtifactDir
from wsss.ops.pool import pool_imap
from wsss.progress import progress

log = logging.getLogger(__name__)


def finish(writer: ArtifactDir, ids: list[str], **manifest: Any) -> dict:
    """Refuse a folder that still lacks a file of `ids`; else write its manifest (last) and return it."""
    left = writer.missing(ids)
    if left:
        raise RuntimeError(f"{writer.root}: {len(left)} images were not written, e.g. {left[:3]}")
    return writer.write_manifest(ids=list(ids), **manifest)


def fill(writer: ArtifactDir, ids: list[str], producer: dict, items: Callable[[list[str]], Iterable[tuple]],
         fn: Callable[..., np.ndarray], manifest: dict, processes: int = 1, palette: bool = False) -> int:
    """Write the PNG of every id of `ids` that `writer` lacks (or holds from another `producer`), then the
    manifest. `items(missing)` yields `(id, args)`; `fn(*args)` is the image's array, computed in a pool of
    `processes` workers (1: inline). Returns how many files were written."""
    missing = writer.prepare(producer, ids)
    log.info("%s: %d of %d images to write (%d processes)", writer.root, len(missing), len(ids), processes)
    written = pool_imap(fn, items(missing), processes=processes)
    for image_id, array in progress(written, f"write {writer.root}", total=len(missing)):
        writer.write_png(image_id, array, palette=palette)
    finish(writer, ids, **manifest)
    return len(missing)
