"""The classifier stage end to end: fit, predict (resumable, atomic), evaluate, resume from last.ckpt, DDP."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, TINY


@pytest.fixture(scope="module")
def classifier_run(module_tmp, data_dir):
    from tests.helpers import compose_config
    from wsss.tasks import run

    cfg = compose_config(module_tmp("cls") / "run", data_dir, ["stage.kur.enabled=true"])
    metrics = run(cfg)
    from pathlib import Path

    return cfg, metrics, Path(cfg.paths.run_dir)


def test_fit_predict_evaluate(classifier_run):
    cfg, metrics, run_dir = classifier_run
    # one checkpoint: a second writer of last.ckpt would leave a last-v1.ckpt copy beside it
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    for split, n in (("train", 24), ("val", 8)):
        manifest = json.loads((run_dir / "cams" / split / "manifest.json").read_text())
        assert manifest["count"] == n and manifest["split"] == split and manifest["dataset"] == "synthetic"
        assert 0.0 <= metrics[f"cams/{split}/miou"] <= 1.0
        assert len(metrics[f"cams/{split}/miou_curve"]) == 16
    z = np.load(run_dir / "cams" / "val" / "val_00024.npz", allow_pickle=False)
    assert z["cams"].dtype == np.float16 and z["cams"].shape[1:] == (64, 64) and len(z["keys"]) == len(z["cams"])
    assert (run_dir / "config.yaml").is_file() and json.loads((run_dir / "run.json").read_text())["commit"]
    assert (run_dir / "cams_miou_curve.png").is_file()



# Learning, not only a range: ResNet-18 from scratch, 8 epochs of the 24 TINY images, CAMs of the 8 val images at
# their best background threshold. Measured (seeds 0 and 1): trained 48.7 / 48.6 %, untrained 23.4 / 22.3 %;
# after 1 epoch (the fixture above) the CAMs are still worse than untrained ones, so that run cannot show it.
LEARNS = ["+stage.predict_splits=[val]", "+stage.eval_splits=[val]", "stage.max_epochs=8",
          "trainer.limit_val_batches=0"]
LEARNING_MARGIN = 0.10  # mIoU points (of 1); the measured gap is 0.25


@pytest.mark.slow
def test_training_beats_untrained_cams_by_a_margin(run_stage):
    trained, _ = run_stage(*LEARNS, run_name="learns")
    untrained, _ = run_stage(*LEARNS, "tasks=[predict,evaluate]", run_name="untrained")
    assert trained["cams/val/miou"] >= untrained["cams/val/miou"] + LEARNING_MARGIN, (trained["cams/val/miou"],
                                                                                      untrained["cams/val/miou"])

def test_checkpoint_loads_without_pickle(classifier_run):
    _, _, run_dir = classifier_run
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["cfg"]["stage"]["kur"]["enabled"] is True
    assert "net.head.weight" in ckpt["state_dict"]


def test_predict_resumes_only_missing_files(classifier_run):
    from tests.helpers import compose_config
    from wsss.tasks import run

    cfg, _, run_dir = classifier_run
    cams = run_dir / "cams" / "train"
    victim = cams / "train_00003.npz"
    victim.unlink()
    (cams / ".train_00005.npz.abc.tmp").write_bytes(b"partial")  # what a killed writer leaves behind
    before = {p.name: p.stat().st_mtime_ns for p in cams.glob("*.npz")}
    again = compose_config(run_dir, cfg.paths.data_dir, ["stage.kur.enabled=true", "tasks=[predict]"])
    run(again)
    after = {p.name: p.stat().st_mtime_ns for p in cams.glob("*.npz")}
    assert victim.is_file()
    assert {k for k in after if after[k] != before.get(k)} == {"train_00003.npz"}
    assert not list(cams.glob("*.tmp"))
    assert json.loads((cams / "manifest.json").read_text())["count"] == 24


def test_rerunning_resumes_from_last_checkpoint(run_stage):
    _, run_dir = run_stage("stage.max_epochs=1", run_name="resume")
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    _, run_dir2 = run_stage("stage.max_epochs=2", "tasks=[fit]", run_name="resume")
    second = torch.load(run_dir2 / "checkpoints" / "last.ckpt", weights_only=True)
    assert run_dir == run_dir2
    assert second["epoch"] == first["epoch"] + 1
    steps_per_epoch = first["global_step"]
    assert second["global_step"] == 2 * steps_per_epoch  # one more epoch, not two


def test_resuming_a_different_experiment_is_refused(run_stage):
    run_stage("tasks=[fit]", run_name="ident")
    with pytest.raises(RuntimeError, match="different configuration"):
        run_stage("tasks=[fit]", "stage.lr=0.5", run_name="ident")


def test_checkpoint_of_another_class_count_is_refused(classifier_run, run_stage):
    _, _, run_dir = classifier_run
    with pytest.raises(ValueError, match="classifies 5 classes but dataset"):
        run_stage("dataset.args.num_classes=3", "tasks=[predict]",
                  f"stage.checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", run_name="classes")


def test_ddp_cpu_writes_every_image_exactly_once(tmp_path, data_dir):
    overrides = [o for o in TINY] + ["trainer=ddp_cpu", "trainer.accelerator=cpu", f"paths.runs_dir={tmp_path}",
                                     f"paths.data_dir={data_dir}", "logger=csv"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "run.py", *overrides], cwd=ROOT, capture_output=True, text=True,
                         timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "classifier" / "synthetic" / "resnet18" / "default"
    for split, n in (("train", 24), ("val", 8)):
        manifest = json.loads((run_dir / "cams" / split / "manifest.json").read_text())
        assert manifest["count"] == n
        assert sorted(manifest["written_by_rank"]) == ["0", "1"]
        assert sum(manifest["written_by_rank"].values()) == n  # disjoint shards covering the split
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "cams/val/miou" in metrics
