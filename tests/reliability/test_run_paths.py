"""Run folders stay inside paths.runs_dir (wsss/run_paths.py, conf/hydra/default.yaml)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TINY
from wsss.pipeline import StepComposer
from wsss.run_paths import inside_runs_dir


def test_names_that_leave_the_runs_folder_are_refused_and_others_normalised(tmp_path):
    runs = tmp_path / "runs"
    run = "classifier/synthetic/resnet18"
    assert inside_runs_dir(runs, f"{run}/a/../b") == str(runs / run / "b")
    assert inside_runs_dir(runs, "classifier/x/y/sweeps/lr0.1") == str(runs / "classifier/x/y/sweeps/lr0.1")
    for escaping in ("classifier/synthetic/resnet18/../../../../escape", "/etc/escape", "..", "a/../.."):
        with pytest.raises(ValueError, match="outside paths.runs_dir=.*run_name"):
            inside_runs_dir(runs, escaping)


def test_a_pipeline_step_with_an_escaping_run_name_is_refused_when_planned(tmp_path):
    common = [*TINY, "stage=classifier", f"paths.runs_dir={tmp_path / 'runs'}"]
    with pytest.raises(Exception, match="outside paths.runs_dir"):
        StepComposer()([*common, "run_name=../../../../x"])
    _, run_dir = StepComposer()([*common, "run_name=a/../b"])
    assert run_dir == tmp_path / "runs" / "classifier" / "synthetic" / "resnet18" / "b"


@pytest.mark.slow
def test_run_py_writes_nothing_outside_the_runs_folder(tmp_path):
    runs = tmp_path / "deep" / "runs"
    runs.mkdir(parents=True)
    out = subprocess.run([sys.executable, "run.py", *TINY, f"paths.runs_dir={runs}",
                          "run_name=../../../../../escape", f"paths.data_dir={tmp_path / 'data'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert out.returncode != 0 and "outside paths.runs_dir" in out.stdout + out.stderr, out.stderr[-3000:]
    written = [p for p in tmp_path.rglob("*") if runs not in p.parents and p != runs and p.is_file()]
    assert written == [] and list(runs.iterdir()) == []



def test_the_plan_refuses_an_affinity_radius_too_large_for_the_crop(tmp_path):
    from wsss.pipeline import PipelineError, plan

    spec = {"steps": {"aff": {"stage": "affinity"}}}
    common = [*TINY, f"paths.runs_dir={tmp_path}"]
    with pytest.raises(PipelineError, match="step 'aff': stage.radius=10 does not fit dataset.crop_size=64"):
        plan(spec, common, ["stage.radius=10"], "r", StepComposer())  # a 16x16 grid; radius 10 needs 19
    assert [s.id for s in plan(spec, common, ["stage.radius=5"], "r", StepComposer())] == ["aff"]
