from pathlib import Path

import pytest

#: a one-epoch ResNet-18 (random init) classifier on 32-px inputs, CPU, no workers
TINY_FIT = [
    "backbone=resnet18", "backbone.pretrained=false", "backbone.output_stride=null", "stage.max_epochs=1",
    "stage.batch_size=4", "stage.augment.randaugment=false", "tasks=[fit]", "num_workers=0", "logger=csv",
    "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "dataset.crop_size=32", "dataset.min_size=32",
    "dataset.max_size=32",
]


@pytest.fixture
def fit_tiny(make_cfg):
    """Train the classifier stage for one epoch on a data set config; returns (metrics, run_dir)."""
    from wsss.tasks import run

    def go(*overrides: str):
        cfg = make_cfg(*TINY_FIT, *overrides, tiny=False)
        return run(cfg), Path(cfg.paths.run_dir)

    return go
