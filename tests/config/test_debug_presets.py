"""Lightning's debugging switches and the debug presets: `+trainer.fast_dev_run=true`,
`limit_predict_batches`, `debug=tiny`, `debug=fdr`. A partial predict writes its files but no manifest and no
metrics.json, and says so."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tests.helpers import ROOT
from wsss.app import CONF_DIR
from wsss.artifacts import MANIFEST
from wsss.tasks import partial_run


@pytest.mark.parametrize("trainer, expected", [
    ({"fast_dev_run": True}, "trainer.fast_dev_run=True"),
    ({"limit_predict_batches": 2}, "trainer.limit_predict_batches=2"),
    ({"limit_predict_batches": 1.0, "fast_dev_run": False}, None),
    ({"limit_predict_batches": None}, None),
])
def test_a_partial_run_is_named_by_its_trainer_switch(trainer, expected):
    assert partial_run({"trainer": trainer}) == expected


def test_fast_dev_run_writes_part_of_the_cams_without_manifest(run_stage, caplog):
    metrics, run_dir = run_stage("+trainer.fast_dev_run=true")
    written = sorted((run_dir / "cams" / "train").glob("*.npz"))
    assert 0 < len(written) < 24 and metrics["cams/train/count"] == len(written)
    assert not (run_dir / "cams" / "train" / MANIFEST).exists() and not (run_dir / "metrics.json").exists()
    assert not any(k.startswith("cams/val/miou") for k in metrics)  # evaluate skipped, not run on part
    assert "no manifest" in caplog.text and "evaluate skipped" in caplog.text


def compose_with(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


def test_debug_tiny_shrinks_any_command_but_keeps_a_typed_backbone():
    cfg = compose_with("experiment=voc12_rs269", "trainer=ddp", "debug=tiny")
    assert (cfg.dataset.name, cfg.backbone.name, cfg.backbone.pretrained) == ("synthetic", "resnet18", False)
    assert (cfg.stage.max_epochs, cfg.num_workers) == (1, 0)
    assert (cfg.trainer.devices, cfg.trainer.accelerator) == (1, "cpu")
    assert cfg.dataset.args.splits == {"train": 16, "val": 8}
    typed = compose_with("backbone=resnet50", "debug=tiny")
    assert (typed.backbone.name, typed.backbone.pretrained) == ("resnet50", False)
    assert compose_with("debug=fdr").trainer.fast_dev_run is True


@pytest.mark.parametrize("stage", ["classifier", "pnoc", "ccam", "saliency", "affinity", "deeplab"])
def test_debug_tiny_wins_over_an_experiments_settings_of_one_stage(stage):
    """conf/experiment_stage/synthetic/ gives DeepLab 30 epochs and the saliency network 4 images a step:
    debug=tiny comes after them, so every stage of the pipeline is at test size."""
    cfg = compose_with("experiment=synthetic", f"stage={stage}", "debug=tiny")
    assert (cfg.stage.max_epochs, cfg.stage.batch_size, cfg.stage.inference.exp_times) == (1, 8, 2)
    if stage == "deeplab":
        assert compose_with("experiment=synthetic", "stage=deeplab").stage.max_epochs == 30  # without: kept


@pytest.mark.slow
def test_the_documented_fast_dev_run_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSS_")}
    command = [sys.executable, str(ROOT / "run.py"), "experiment=synthetic", "+trainer.fast_dev_run=true"]
    out = subprocess.run(command,
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "metrics.json not written" in out.stdout + out.stderr
