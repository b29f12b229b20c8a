"""`stage.batch_scope`: the recipes' batch is the batch of one optimisation step over all devices (as the papers'
DataParallel code ran it), split over the trainer's devices; `device` keeps Lightning's per-device batch."""
import pytest

from tests.helpers import compose_config

CPU_DDP = ["trainer.accelerator=cpu", "trainer.strategy=ddp", "num_workers=0", "logger=csv"]


def context(tmp_path, data_dir, *overrides):
    from wsss.tasks import Context

    return Context(compose_config(tmp_path / "run", data_dir, [*CPU_DDP, *overrides]))


@pytest.mark.parametrize("stage", ["classifier", "pnoc", "ccam", "affinity", "deeplab", "saliency"])
def test_a_global_batch_is_split_over_the_devices(tmp_path, data_dir, stage):
    fits_the_crop = ["stage.radius=4"] if stage == "affinity" else []  # the test crop's 16x16 stride-4 grid
    ctx = context(tmp_path, data_dir, f"stage={stage}", "trainer.devices=2", "stage.batch_size=8",
                  "stage.batch_scope=global", *fits_the_crop)
    assert ctx.module.world_size == 2 and ctx.dm.batch_size == 4  # 2 devices × 4 = the step's 8 images


def test_a_device_batch_is_per_device(tmp_path, data_dir):
    ctx = context(tmp_path, data_dir, "trainer.devices=2", "stage.batch_size=8", "stage.batch_scope=device")
    assert ctx.dm.batch_size == 8  # 16 images a step


def test_one_device_runs_the_whole_batch(tmp_path, data_dir):
    ctx = context(tmp_path, data_dir, "trainer.devices=1", "stage.batch_size=8", "stage.batch_scope=global")
    assert ctx.dm.batch_size == 8


def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"stage.batch_size=8 with stage.batch_scope=global cannot be split evenly "
                                         r"over 3 devices"):
        context(tmp_path, data_dir, "trainer.devices=3", "stage.batch_size=8", "stage.batch_scope=global")


def test_the_thesis_recipes_state_the_global_batch(make_cfg):
    """Every voc12_* recipe of the thesis chain gives the batch the thesis code ran per step (DataParallel)."""
    from pathlib import Path

    recipes = sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "experiment").glob("voc12_*.yaml"))
    assert len(recipes) >= 9
    for recipe in recipes:
        assert make_cfg(f"experiment={recipe}", tiny=False).stage.batch_scope == "global", recipe


@pytest.mark.slow
def test_two_cpu_ranks_take_the_steps_of_the_global_batch(tmp_path, data_dir):
    """A real 2-rank DDP fit (trainer=ddp_cpu): 24 train images at a global batch of 8 are 3 optimiser steps
    (4 images a rank a step), where a per-device 8 would be 16 a step."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from tests.helpers import TINY

    root = Path(__file__).parents[2]
    overrides = [*TINY, "trainer=ddp_cpu", "trainer.devices=2", "tasks=[fit]", "stage.batch_scope=global",
                 "stage.batch_size=8", f"paths.runs_dir={tmp_path}", f"paths.data_dir={data_dir}"]
    out = subprocess.run([sys.executable, "run.py", *overrides], cwd=root, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = tmp_path / "classifier" / "synthetic" / "resnet18" / "default" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 3
