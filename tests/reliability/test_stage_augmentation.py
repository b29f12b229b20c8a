"""Every stage's training augmentation draws from the sample's seed (wsss.reliability.rng.seed_augmentation,
applied by the training loader to any data set): the same seed gives the same batches, in every stage."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from wsss.artifacts import ArtifactDir
from wsss.refine.tasks import LABELS

STAGES = {
    "classifier": ["stage=classifier"],
    "affinity": ["stage=affinity", "stage.radius=5", "stage.batch_size=8"],
    "deeplab": ["stage=deeplab", "stage.masks=gt", "stage.model.decoder_channels=32"],
    "ccam": ["stage=ccam", "stage.crop_size=64", "stage.batch_size=8"],
}


def affinity_labels(stage) -> None:
    """Affinity labels (all background) of the training split, as the stage's affinity_labels task writes."""
    name = stage.cfg["dataset"]["train_split"]
    split = stage.datamodule().split(name)
    folder = ArtifactDir(stage.run_dir / LABELS / name, ".png")
    for image_id in split.ids:
        folder.write_png(image_id, np.zeros(split.load_image(image_id).shape[:2], np.uint8))
    folder.write_manifest(ids=split.ids, dataset=stage.cfg["dataset"]["name"], kind=LABELS)


def first_batch(stage) -> torch.Tensor:
    return next(iter(stage.datamodule().train_dataloader()))["image"]


@pytest.mark.parametrize("name", list(STAGES))
def test_the_same_seed_gives_the_same_augmented_batch(name, make_cfg, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # what seed_everything(0) sets
    cfg = OmegaConf.to_container(make_cfg(*STAGES[name]), resolve=True)
    stage = get_class(cfg["stage"]["_target_"])(cfg)
    if name == "affinity":
        affinity_labels(stage)
    torch.manual_seed(1)
    first = first_batch(stage)
    torch.manual_seed(2)  # the global generator does not decide the augmentation either
    assert torch.equal(first_batch(stage), first)
    monkeypatch.setenv("PL_GLOBAL_SEED", "1")
    assert not torch.equal(first_batch(stage), first)  # another seed, other crops
