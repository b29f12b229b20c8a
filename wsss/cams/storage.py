"""The float type of the maps written to `.npz` artifacts (`stage.inference.storage`).

float16 halves the disk of a CAM / random-walk folder, but rounds a [0, 1] map by up to 2.4e-4, enough to
move a pixel across the 0.25 / 0.3 / 0.4 thresholds that later steps apply. The thesis code stores float32
(`np.save` of float32 arrays, lucasdavid/PNOC@f250e0d:scripts/cam/inference.py, scripts/rw/inference.py);
the voc12 recipes do.
"""
from __future__ import annotations

import numpy as np

STORAGE = {"float16": np.float16, "float32": np.float32}


def storage_dtype(name: str, key: str = "stage.inference.storage") -> type:
    """The numpy type named by the config value `name`; a clear error names `key` otherwise."""
    if name not in STORAGE:
        raise ValueError(f"{key}={name!r}; expected one of {sorted(STORAGE)}")
    return STORAGE[name]
