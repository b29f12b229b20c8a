"""Metrics computed while training are named by the images they were computed on: `val/*` on a split held out
from training, `train_subset/*` on the training split or one inside it (the thesis recipes keep the 2023
code's train split as a named choice); the Optuna example selects on a held-out split."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class
from omegaconf import OmegaConf

from wsss.app import CONF_DIR
from wsss.metric_names import validation_prefix


def composed(*overrides: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    GlobalHydra.instance().clear()
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain["dataset"]["val_split"] = cfg.dataset.val_split  # a recipe may name it through another key
    return plain


@pytest.mark.parametrize("overrides, split, prefix", [
    (["dataset=synthetic"], "val", "val/"),
    (["dataset=voc12"], "val", "val/"),
    (["dataset=coco14"], "val2014", "val/"),
    (["experiment=voc12_rs269"], "train", "train_subset/"),          # the 2023 choice, kept by the recipes
    (["experiment=voc12_rs269_pnoc_ls"], "train", "train_subset/"),
    (["experiment=coco14_rs269"], "train2014", "train_subset/"),
    (["dataset=voc12", "dataset.train_split=train", "dataset.val_split=train"], "train", "train_subset/"),
    (["dataset=deepglobe"], "train", "train_subset/"),
])
def test_the_validation_split_names_its_metrics(overrides, split, prefix):
    dataset = composed(*overrides)["dataset"]
    assert dataset["val_split"] == split and validation_prefix(dataset) == prefix


def test_the_optuna_example_selects_on_held_out_images():
    cfg = composed("hparams_search=classifier_optuna", "dataset=voc12")
    assert cfg["objective"] == "val/map" and validation_prefix(cfg["dataset"]) == "val/"


def test_the_cam_stage_logs_under_the_split_prefix():
    plain = composed("experiment=voc12_rs269", "backbone=resnet18", "backbone.pretrained=false")
    plain["paths"] = {"run_dir": "unused"}
    stage = get_class(plain["stage"]["_target_"])(OmegaConf.to_container(OmegaConf.create(plain), resolve=False))
    assert stage.val_prefix == "train_subset/" and stage.val_metrics.prefix == "train_subset/"
