"""The maps a random walk starts from (`stage.inference.seeds` of the affinity stage).

`stride4` (the thesis code, scripts/rw/inference.py): the stride-4 CAMs that CAM inference saved beside the
full-resolution ones (npz key `cams_stride4`: every scale's maps resized to ⌈H/4⌉ × ⌈W/4⌉ and summed, each
class divided by its maximum). `full`: the full-resolution CAMs bilinearly downsampled to that grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEEDS = ("stride4", "full")
SEED_KEY = "cams_stride4"


def rw_seeds(npz: dict, path: Path, stage_cfg: dict) -> np.ndarray | None:
    """The stride-4 seeds of one CAM file under `inference.seeds=stride4`, None under `full`."""
    choice = (stage_cfg.get("inference") or {}).get("seeds", "stride4")
    if choice not in SEEDS:
        raise ValueError(f"stage.inference.seeds={choice!r}; expected one of {SEEDS}")
    if choice == "full":
        return None
    if SEED_KEY not in npz:
        raise ValueError(f"{path}: no stride-4 CAMs ({SEED_KEY!r}) for the random-walk seeds; re-run the CAM "
                         f"stage's predict task with stage.inference.stride4_seeds=true, or set "
                         f"stage.inference.seeds=full to seed from the full-resolution CAMs")
    return npz[SEED_KEY]


def seed_maps(cams: np.ndarray, seeds: np.ndarray | None, grid: tuple[int, int]) -> torch.Tensor:
    """(1, n, h, w) float32 seeds on the stride-4 `grid`."""
    if seeds is not None:
        if tuple(seeds.shape) != (cams.shape[0], *grid):
            raise ValueError(f"stride-4 CAMs of shape {tuple(seeds.shape)} do not match the {cams.shape[0]} "
                             f"classes on the {grid} grid of the image")
        return torch.from_numpy(seeds.astype(np.float32))[None]
    hr = torch.from_numpy(cams.astype(np.float32))[None]
    return F.interpolate(hr, size=grid, mode="bilinear", align_corners=False)
