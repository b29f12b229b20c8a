"""Smoke and behaviour tests of the `ccam` (C²AM / C²AM-H) and `saliency` (PoolNet) stages on the
tiny synthetic set; the shared trained classifier (tests/conftest.py) provides the hint CAMs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import compose_config
from wsss.artifacts import ArtifactDir
from wsss.data.datasets import build_split
from wsss.losses.ccam import hint_map
from wsss.tasks import run

pytestmark = pytest.mark.slow

CCAM = ["stage=ccam", "stage.crop_size=64", "stage.batch_size=8", "stage.inference.scales=[1.0]",
        "stage.pseudo.processes=1"]


@pytest.fixture(scope="module")
def runs(module_tmp, data_dir):
    root = module_tmp("saliency_runs")

    def go(*overrides: str, run_name: str):
        cfg = compose_config(root / run_name, data_dir, list(overrides))
        return run(cfg), Path(cfg.paths.run_dir), cfg

    return go


@pytest.fixture(scope="module")
def classifier(module_tmp, trained_classifier):
    """This module's copy of the shared trained classifier (the hint CAMs)."""
    return trained_classifier(module_tmp("saliency_oc") / "oc")


@pytest.fixture(scope="module")
def ccamh(runs, classifier):
    metrics, run_dir, cfg = runs(*CCAM, "stage.hints.enabled=true", f"stage.inputs.cams={classifier}/cams",
                                 f"stage.evaluation.cams={classifier}/cams", run_name="ccamh")
    return metrics, run_dir, cfg


def _ids(cfg, split):
    from omegaconf import OmegaConf
    return build_split(OmegaConf.to_container(cfg.dataset, resolve=True), split)


def test_ccam_h_fit_predict_pseudo_evaluate(ccamh):
    metrics, run_dir, cfg = ccamh
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    for split in ("train", "val"):
        ds = _ids(cfg, split)
        for kind, suffix in (("saliency", ".npz"), ("pseudo_saliency", ".png")):
            art = ArtifactDir(run_dir / kind / split, suffix)
            manifest = art.check({"dataset": "synthetic", "split": split})
            assert manifest["kind"] == kind and manifest["count"] == len(ds.ids)
            for image_id in ds.ids:
                if kind == "saliency":   # float maps (stage default float16) in [0, 1], as the thesis code's
                    sal = art.read_npz(image_id)["saliency"]
                    assert sal.dtype == np.float16 and 0 <= sal.min() and sal.max() <= 1
                else:
                    sal = art.read_png(image_id)
                    assert sal.dtype == np.uint8 and set(np.unique(sal)) <= {0, 255}
                assert sal.shape == ds.load_image(image_id).shape[:2]
        assert ArtifactDir(run_dir / "saliency" / split, ".npz").manifest()["flipped"] is False  # hints pin it
        for kind in ("saliency", "pseudo_saliency"):
            for key in ("fgbg_miou", "class_miou", "cam_miou"):
                assert 0.0 <= metrics[f"{kind}/{split}/{key}"] <= 1.0
    assert metrics["train/hint"] > 0  # the hint term was on
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["saliency/val/fgbg_miou"] == metrics["saliency/val/fgbg_miou"]


def test_predict_and_pseudo_resume_rewrite_only_missing(runs, ccamh, classifier):
    _, run_dir, cfg = ccamh
    sal = ArtifactDir(run_dir / "saliency" / "train", ".npz")
    pseudo = ArtifactDir(run_dir / "pseudo_saliency" / "train", ".png")
    ids = _ids(cfg, "train").ids
    victim, pseudo_victim = ids[3], ids[5]
    before = {i: os.stat(sal.path(i)).st_mtime_ns for i in ids if i != victim}
    pseudo_before = {i: os.stat(pseudo.path(i)).st_mtime_ns for i in ids if i != pseudo_victim}
    old = sal.read_npz(victim)["saliency"]
    sal.path(victim).unlink()
    pseudo.path(pseudo_victim).unlink()
    runs(*CCAM, "stage.hints.enabled=true", f"stage.inputs.cams={classifier}/cams",
         f"stage.evaluation.cams={classifier}/cams", "tasks=[predict_saliency,pseudo_saliency]", run_name="ccamh")
    assert sal.exists(victim) and pseudo.exists(pseudo_victim)
    assert {i: os.stat(sal.path(i)).st_mtime_ns for i in before} == before
    assert {i: os.stat(pseudo.path(i)).st_mtime_ns for i in pseudo_before} == pseudo_before
    assert np.array_equal(sal.read_npz(victim)["saliency"], old)  # same weights (from last.ckpt), same map
    assert sal.manifest()["count"] == len(ids)


def test_polarity_rule_picks_the_hinted_partition(runs, classifier):
    """Vanilla C²AM with the 'hints' rule: the stored decision orients the map onto the hints."""
    _, run_dir, cfg = runs(*CCAM, "stage.polarity.rule=hints", f"stage.inputs.cams={classifier}/cams",
                           "tasks=[fit]", run_name="ccam_hints_rule")
    from omegaconf import OmegaConf
    from wsss.stages.ccam import CCAMStage

    stage = CCAMStage(OmegaConf.to_container(cfg, resolve=True))
    stage.load_weights(run_dir / "checkpoints" / "last.ckpt")
    stage.eval()
    ds = _ids(cfg, "train")
    cams = ArtifactDir(classifier / "cams" / "train", ".npz")
    mean, std = np.array(stage.norm_mean), np.array(stage.norm_std)
    probs, hints = [], []
    with torch.no_grad():
        for image_id in ds.ids:
            image = cv2.resize(ds.load_image(image_id), (64, 64), interpolation=cv2.INTER_LINEAR)
            x = torch.from_numpy(((image / 255.0 - mean) / std).astype(np.float32)).permute(2, 0, 1)[None]
            z = cams.read_npz(image_id)
            h = cv2.resize(z["cams"].astype(np.float32).max(0), (64, 64), interpolation=cv2.INTER_LINEAR)
            logits = stage.net(x).logits
            probs.append(torch.sigmoid(logits))
            hints.append(hint_map(torch.from_numpy(h)[None], tuple(logits.shape[-2:])))
    probs, hints = torch.cat(probs), torch.cat(hints)
    # not foreground_is_flipped again (that is what the stage ran): the stored orientation must put more
    # foreground on the hinted pixels than the opposite orientation would
    oriented = torch.sigmoid(stage.net.foreground_logits(torch.logit(probs.clamp(1e-6, 1 - 1e-6))))
    hinted = hints > 0.4
    assert hinted.any() and oriented[hinted].mean() > (1 - oriented)[hinted].mean()


def test_missing_hint_folder_names_the_producer(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="stage=classifier"):
        runs(*CCAM, "stage.hints.enabled=true", f"stage.inputs.cams={tmp_path}/nowhere", "tasks=[fit]",
             run_name="ccam_missing")


def test_saliency_stage_fit_predict_evaluate(runs, ccamh):
    _, ccam_dir, _ = ccamh
    metrics, run_dir, cfg = runs("stage=saliency", f"stage.inputs.pseudo_saliency={ccam_dir}/pseudo_saliency",
                                 "stage.level_channels=[16,16,16,16]", "stage.batch_size=4", "stage.lr=1e-3",
                                 "stage.frozen_bn=false", run_name="poolnet")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert np.isfinite(metrics["train/loss"])
    for split in ("train", "val"):
        ds = _ids(cfg, split)
        art = ArtifactDir(run_dir / "saliency" / split, ".png")
        assert art.check({"dataset": "synthetic", "split": split})["stage"] == "saliency"
        assert not art.missing(ds.ids)
        assert art.read_png(ds.ids[0]).shape == ds.load_image(ds.ids[0]).shape[:2]
        assert 0.0 <= metrics[f"saliency/{split}/fgbg_miou"] <= 1.0
        assert f"pseudo_saliency/{split}/fgbg_miou" not in metrics
