"""scripts/pipeline_figure.py names the pipeline steps whose folders are missing instead of a raw
FileNotFoundError."""
from __future__ import annotations

import runpy

import pytest

from tests.helpers import ROOT

FIGURE = runpy.run_path(str(ROOT / "scripts" / "pipeline_figure.py"))


def test_the_missing_steps_are_named(tmp_path):
    (tmp_path / "classifier" / "synthetic" / "resnet18" / "default" / "cams" / "val").mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        FIGURE["figure"](tmp_path, "synthetic", "resnet18", "default", "val", 2)
    message = str(stop.value)
    assert "step classifier" not in message
    for step in ("pnoc", "ccam", "saliency", "affinity", "deeplab"):
        assert f"step {step}:" in message
    assert "python run.py pipeline=wsss" in message
