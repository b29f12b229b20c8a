"""Random-walk seeds: the CAM stage's stride-4 maps (thesis code) or the full-resolution CAMs downsampled."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.refine.rw_seeds import rw_seeds, seed_maps


def test_stride4_seeds_are_used_as_saved():
    cams = np.random.default_rng(0).random((2, 16, 20)).astype(np.float16)
    saved = np.random.default_rng(1).random((2, 4, 5)).astype(np.float16)
    seeds = rw_seeds({"cams": cams, "cams_stride4": saved}, Path("x.npz"), {"inference": {"seeds": "stride4"}})
    torch.testing.assert_close(seed_maps(cams, seeds, (4, 5)), torch.from_numpy(saved.astype(np.float32))[None])


def test_full_seeds_downsample_the_cams():
    cams = np.random.default_rng(0).random((2, 16, 20)).astype(np.float32)
    assert rw_seeds({"cams": cams}, Path("x.npz"), {"inference": {"seeds": "full"}}) is None
    want = F.interpolate(torch.from_numpy(cams)[None], size=(4, 5), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seed_maps(cams, None, (4, 5)), want)


def test_missing_or_mismatched_seeds_are_named():
    cams = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="x.npz: no stride-4 CAMs.*seeds=full"):
        rw_seeds({"cams": cams}, Path("x.npz"), {})
    with pytest.raises(ValueError, match="seeds='half'"):
        rw_seeds({"cams": cams}, Path("x.npz"), {"inference": {"seeds": "half"}})
    with pytest.raises(ValueError, match="do not match"):
        seed_maps(cams, np.zeros((1, 3, 3), np.float32), (2, 2))
