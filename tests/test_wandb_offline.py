"""logger=wandb without network: the run folder holds the W&B history (metrics, hyperparameters, media)."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("wandb")

from wsss.artifacts import ArtifactDir  # noqa: E402
from wsss.logging_utils import finish_wandb, log_evaluation, offline_history  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield
    finish_wandb(teardown=True)


def offline_run(run_dir: Path) -> Path:
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline run under {run_dir / 'wandb'}, found {runs}"
    return runs[0]


def test_classifier_run_logs_metrics_and_hyperparameters_offline(run_stage):
    metrics, run_dir = run_stage("logger=wandb", "trainer.log_every_n_steps=1", "logger.wandb.mode=offline")
    finish_wandb(teardown=True)
    folder = offline_run(run_dir)
    run = offline_history(folder)
    logged = {k: v for row in run["history"] for k, v in row.items()}
    assert any(k == "train/loss" for k in logged) and "val/map" in logged
    assert logged["cams/val/miou"] == pytest.approx(metrics["cams/val/miou"])
    # A single run keeps its name and its stage's group; sweeps: tests/pipeline/test_sweep.py
    assert run["name"] == "classifier-synthetic-resnet18-default" and run["job_type"] == "classifier"
    assert run["group"] == "classifier" and {"classifier", "synthetic", "resnet18"} <= set(run["tags"])
    # The config as flat dotted keys, the ones the dashboard groups and plots by
    cfg = run["config"]
    assert "cfg" not in cfg and cfg["stage.name"] == "classifier" and cfg["stage.lr"] == pytest.approx(0.1)
    assert cfg["dataset.args.splits.train"] == 24 and cfg["stage.inference.scales"] == [1.0]
    # The CSV logger of logger=wandb still writes its metrics next to it.
    assert (run_dir / "logs" / "metrics.csv").is_file()


class TinySplit:
    ids = ["a", "b"]

    def load_image(self, image_id):
        return np.full((8, 8, 3), 100 if image_id == "a" else 200, np.uint8)


def test_log_evaluation_sends_curve_iou_table_and_cam_overlays(tmp_path):
    from PIL import Image
    from pytorch_lightning.loggers import WandbLogger

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "cams_miou_curve.png")
    cams = ArtifactDir(tmp_path / "cams" / "val", ".npz")
    for image_id in TinySplit.ids:
        cams.write_npz(image_id, keys=np.array([1]), cams=np.linspace(0, 1, 64, dtype=np.float16).reshape(1, 8, 8))
    metrics = {"cams/val/miou": 0.5, "cams/val/iou": {"background": 0.75, "disk": 0.25}, "cams/val/count": 2}
    logger = WandbLogger(save_dir=str(tmp_path), project="t", offline=True)
    log_evaluation([logger], metrics, tmp_path, "cams", dataset=TinySplit(), artifact_dir=cams.root)
    finish_wandb(teardown=True)
    run = offline_history(offline_run(tmp_path))
    logged = {k: v for row in run["history"] for k, v in row.items()}
    assert logged["cams/val/miou"] == 0.5 and "cams/val/count" not in logged
    assert logged["cams/miou_curve/_type"] == "images/separated"
    assert logged["cams/val/iou_per_class/_type"] == "table-file"
    assert {"cams/overlay/a/_type", "cams/overlay/b/_type"} <= set(logged)
    table = next(Path(offline_run(tmp_path)).rglob("*iou_per_class*.table.json"))
    data = json.loads(table.read_text())
    assert data["columns"] == ["class", "IoU"] and data["data"] == [["background", 0.75], ["disk", 0.25]]
    overlays = sorted(offline_run(tmp_path).rglob("media/images/cams/overlay/a_*.png"))
    assert len(overlays) == 1
    # image | one overlay per CAM
    assert np.asarray(Image.open(overlays[0])).shape[:2] == (8, 16)
