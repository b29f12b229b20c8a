"""Artifacts know what produced them and a missing split names its producer's command."""
import hashlib
import json
from pathlib import Path

import pytest

from tests.fixtures.voc_layout import VOC_TINY
from wsss.artifacts import ArtifactDir, file_digest
from wsss.pipeline import stale_artifacts

pytestmark = pytest.mark.slow


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def classifier(make_cfg, voc_root):
    from wsss.tasks import run

    def go(*overrides: str, run_name: str = "cls"):
        cfg = make_cfg(*VOC_TINY, f"dataset.args.root={voc_root}", "stage=classifier", "stage.batch_size=8",
                       "stage.inference.scales=[1.0]", *overrides, run=run_name, tiny=False)
        return run(cfg), Path(cfg.paths.run_dir)

    return go


def test_resume_with_more_epochs_rewrites_the_cams_and_names_the_checkpoint(classifier):
    _, run_dir = classifier("stage.max_epochs=1")
    cam = run_dir / "cams" / "val" / "2007_000032.npz"
    first = md5(cam)
    metrics, _ = classifier("stage.max_epochs=2")   # resumes, trains a second epoch
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert md5(cam) != first
    manifest = ArtifactDir(cam.parent, ".npz").manifest()
    assert manifest["checkpoint"] == str(ckpt)
    assert manifest["producer"]["checkpoint"] == {"path": str(ckpt), "sha256": file_digest(ckpt)}
    assert stale_artifacts(run_dir) is None

    # the same command again writes nothing; other inference settings rewrite
    mtime = cam.stat().st_mtime_ns
    classifier("stage.max_epochs=2")
    assert cam.stat().st_mtime_ns == mtime
    classifier("stage.max_epochs=2", "stage.inference.scales=[1.0,0.5]")
    assert cam.stat().st_mtime_ns != mtime

    # weights changed by a run that did not predict: the pipeline's check sees the CAMs are stale
    classifier("stage.max_epochs=3", "stage.inference.scales=[1.0,0.5]", "tasks=[fit]")
    assert "older" in stale_artifacts(run_dir) and str(ckpt) in stale_artifacts(run_dir)


def test_a_split_nobody_predicted_names_the_producing_stage_and_its_command(classifier, make_cfg, voc_root):
    from wsss.tasks import run

    _, cls_dir = classifier("stage.max_epochs=1", "dataset.predict_splits=[val]", "dataset.eval_splits=[val]")
    cfg = make_cfg(*VOC_TINY, f"dataset.args.root={voc_root}", "stage=ccam", "stage.hints.enabled=true",
                   f"stage.inputs.cams={cls_dir / 'cams'}", "stage.max_epochs=1", "tasks=[fit]", run="ccam",
                   tiny=False)
    with pytest.raises(FileNotFoundError) as e:
        run(cfg)
    text = str(e.value)
    assert "train_aug" in text and "stage=classifier" in text and str(cls_dir) in text
    assert "python run.py stage=classifier" in text and "dataset.predict_splits=[val,train_aug]" in text
    info = json.loads((cls_dir / "run.json").read_text())
    assert info["predict_splits"] == ["val"]
