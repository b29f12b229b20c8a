"""Pseudo masks straight from CAMs: a constant background plane at threshold t, argmax (ties go to
background, lucasdavid/PNOC@f250e0d:scripts/evaluate.py), as palette PNGs. A stand-in for the random-walk
masks of the affinity stage, and a baseline for them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from wsss.artifacts import ArtifactDir, config_hash
from wsss.cams.evaluate import threshold_predictions
from wsss.fill import fill
from wsss.identity import derived_identity


def cam_mask(keys: np.ndarray, cams: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W) uint8 mask: 0 where every CAM ≤ t, else 1 + the class id of the strongest CAM."""
    if cams.ndim != 3 or len(keys) != cams.shape[0]:
        raise ValueError(f"CAMs of shape {cams.shape} with {len(keys)} keys; expected (n, H, W) with n keys")
    pred = threshold_predictions(torch.from_numpy(cams.astype(np.float32)), torch.from_numpy(keys.astype(np.int64)),
                                 torch.tensor([float(threshold)]), tuple(cams.shape[1:]))[0]
    return pred.numpy().astype(np.uint8)


def pseudo_masks_from_cams(cams_dir: str | Path, out_dir: str | Path, ids: Sequence[str], threshold: float,
                           **manifest) -> dict:
    """Write `<out_dir>/<id>.png` for every id missing there, then the manifest (kind pseudo_masks).

    Args:
        cams_dir: CAM artifact folder (npz with `keys`, `cams`).
        out_dir: destination folder.
        ids: image ids of the split.
        threshold: background threshold t.
        manifest: extra manifest fields (stage, dataset, split, ...).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}; expected a background threshold in [0, 1]")
    cams = ArtifactDir(cams_dir, ".npz")
    out = ArtifactDir(out_dir, ".png")
    producer = derived_identity(config_hash({"threshold": float(threshold)}), [cams.root.parent])

    def items(missing):
        for image_id in missing:
            z = cams.read_npz(image_id)
            yield image_id, (z["keys"], z["cams"], threshold)

    fill(out, list(ids), producer, items, cam_mask,
         dict(kind="pseudo_masks", threshold=float(threshold), source=str(cams.root), **manifest), palette=True)
    return out.manifest()
