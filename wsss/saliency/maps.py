"""Saliency map folders: how each saliency stage stores its maps, and how a reader gets them back in [0, 1].

* C²AM / C²AM-H (`stage=ccam`) writes float maps: `.npz` with one array `saliency` (H, W), in the float type of
  `stage.inference.storage`. The thesis code `np.save`s the float `hr_cam` (lucasdavid/PNOC@f250e0d:
  scripts/ccam/inference.py:103-105) and thresholds that float map for the pseudo saliency
  (scripts/ccam/inference_crf.py:58-62); a uint8 PNG would turn every value in (0.2, 0.20196) into background
  at δ = 0.2 (round(255·v) = 51).
* The saliency network (`stage=saliency`, PoolNet) writes uint8 PNGs (σ·255), as poolnet/solver.py does.

Every reader (pseudo saliency, evaluation, affinity labels, random walk, the pipeline figure) opens a folder
with `open_saliency`, which takes the file type its manifest records, and reads a map with `read_saliency`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wsss.artifacts import ArtifactDir, open_split

KEY = "saliency"
SUFFIXES = (".npz", ".png")


def float_map(saliency: torch.Tensor, dtype: type) -> dict[str, np.ndarray]:
    """The npz arrays of one float saliency map (H, W) in [0, 1], stored as `dtype`."""
    return {KEY: saliency.detach().float().cpu().numpy().astype(dtype)}


def read_saliency(folder: ArtifactDir, image_id: str) -> np.ndarray:
    """The map of `image_id` as float32 (H, W) in [0, 1]: an npz's `saliency` array, or a PNG ÷ 255."""
    if folder.suffix == ".png":
        return folder.read_png(image_id).astype(np.float32) / 255.0
    arrays = folder.read_npz(image_id)
    if KEY not in arrays:
        raise ValueError(f"{folder.path(image_id)}: no {KEY!r} array (it holds {sorted(arrays)}); a saliency "
                         f"folder holds the maps of stage=ccam (.npz) or stage=saliency (.png)")
    return arrays[KEY].astype(np.float32)


def open_saliency(kind_root: str | Path, split: str, ids: list[str], dataset: str | None = None) -> ArtifactDir:
    """The finished saliency folder of `split` under `kind_root`, read with the file type its manifest records
    (.npz: C²AM-H float maps; .png: the saliency network's)."""
    folder = open_split(kind_root, split, ids, ".png", dataset)
    suffix = (folder.manifest() or {}).get("suffix", ".png")
    if suffix not in SUFFIXES:
        raise ValueError(f"{folder.root}: its manifest records {suffix!r} files; a saliency folder holds one of "
                         f"{SUFFIXES}")
    return ArtifactDir(folder.root, suffix)
