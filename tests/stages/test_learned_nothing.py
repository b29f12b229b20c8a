"""A step that learned nothing says so: the run's warning, its marker, the pipeline's mark and stop."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from wsss import learned
from wsss.pipeline import PipelineError, Step, mark_if_learned_nothing


def test_all_background_miou_by_hand():
    # rows: ground truth (background 10 pixels, class 1 10 pixels, class 2 absent); columns: prediction
    confusion = torch.tensor([[8, 2, 0], [3, 7, 0], [0, 0, 0]])
    # all background: IoU_bg = 10 / 20, IoU_1 = 0 / 10, class 2 in neither (left out) -> mean 0.25
    assert learned.all_background_miou(confusion) == pytest.approx(0.25)


def test_check_writes_the_verdict_only_at_or_below_the_trivial_score(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="wsss.learned"):
        assert not learned.check(tmp_path, "deeplab", 0.30, 0.25, "more steps", margin=0.02)
        assert learned.verdict(tmp_path) is None and not caplog.records
        assert learned.check(tmp_path, "deeplab", 0.26, 0.25, "more steps", margin=0.02)
    message = learned.verdict(tmp_path)
    assert "learned nothing" in message and "26.0 %" in message and "25.0 %" in message
    assert "more steps" in message
    assert caplog.records[-1].getMessage() == message
    learned.forget(tmp_path)
    assert learned.verdict(tmp_path) is None


def test_deeplab_with_lr_0_ends_with_the_warning(run_stage, caplog):
    small = ["stage=deeplab", "stage.model.decoder_channels=32", "stage.masks=gt", "stage.lr=0",
             "+trainer.limit_train_batches=1", "tasks=[fit]"]
    with caplog.at_level(logging.WARNING):
        _, run_dir = run_stage(*small)
    message = learned.verdict(run_dir)
    assert message is not None and message.startswith("deeplab (val/miou) learned nothing")
    assert "stage.backbone_checkpoint" in message
    assert caplog.records[-1].getMessage() == message  # the last thing the run says


def step_in(run_dir: Path) -> Step:
    return Step("deeplab", "deeplab", [], run_dir, {}, ["*miou"], status="ran")


def test_pipeline_marks_the_step_and_stops_only_when_told(tmp_path):
    learned.check(tmp_path, "deeplab", 0.05, 0.05, "more steps")
    step = step_in(tmp_path)
    mark_if_learned_nothing(step, stop=False)
    assert step.status == "ran · LEARNED NOTHING"
    with pytest.raises(PipelineError, match="learned nothing.*stop_if_learned_nothing=true"):
        mark_if_learned_nothing(step_in(tmp_path), stop=True)
    learned.forget(tmp_path)
    quiet = step_in(tmp_path)
    mark_if_learned_nothing(quiet, stop=True)
    assert quiet.status == "ran"
