"""`stage.keep_best` (DeepLab): the thesis code saves the weights at every validation whose mIoU (against the
pseudo-mask folder's val split) beats all earlier ones (lucasdavid/PNOC@f250e0d:scripts/segmentation/train.py:
234-245); predictions then come from that checkpoint."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from wsss.stage_schema import Settings
from wsss.stages.deeplab import DeepLabStage
from wsss.tasks import kept_checkpoint


class Trainer:
    def __init__(self):
        self.sanity_checking, self.saved = False, []

    def save_checkpoint(self, path, weights_only=False):
        self.saved.append((Path(path).name, weights_only))


def run_epochs(mious, keep_best=True):
    stage = SimpleNamespace(scfg=Settings({"keep_best": keep_best}), trainer=Trainer(), run_dir=Path("run"),
                            best_val_miou=-1.0)
    saved_at = []
    for epoch, miou in enumerate(mious):
        before = len(stage.trainer.saved)
        DeepLabStage.keep_if_best(stage, miou)
        if len(stage.trainer.saved) > before:
            saved_at.append(epoch)
    return saved_at, stage


def test_best_checkpoint_is_written_where_the_running_maximum_rises():
    mious = [0.31, 0.52, 0.47, 0.52, 0.60, 0.12]
    running, expected = -1.0, []
    for epoch, m in enumerate(mious):   # the upstream rule: save when miou_best_ < miou
        if running < m:
            running, expected = m, expected + [epoch]
    saved_at, stage = run_epochs(mious)
    assert saved_at == expected == [0, 1, 4]
    assert stage.best_val_miou == pytest.approx(0.60)
    assert set(stage.trainer.saved) == {("best.ckpt", True)}
    assert run_epochs(mious, keep_best=False)[0] == []


def test_predict_uses_best_ckpt_only_when_kept(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    keep = {"stage": {"keep_best": True}}
    assert kept_checkpoint(keep, tmp_path).name == "last.ckpt"    # none written yet (no val split)
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"x")
    assert kept_checkpoint(keep, tmp_path).name == "best.ckpt"
    assert kept_checkpoint({"stage": {}}, tmp_path).name == "last.ckpt"
