"""`python run.py pipeline=...` end to end: resume after an interruption, skip what is up to date."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY

PIPELINE = """\
# @package _global_
pipeline:
  name: {name}
  steps:
    cam:
      stage: classifier
      outputs: {{cams: cams}}
    later:                    # a stage that does not exist: left out with a log line
      stage: nosuchstage
      overrides: ["stage.inputs.cams=${{outputs.cams}}"]
{extra}
hydra:
  run:
    dir: ${{paths.runs_dir}}/pipeline/${{pipeline.name}}/${{run_name}}
"""


def write_pipeline(tmp_path: Path, name: str, extra: str = "") -> Path:
    conf = tmp_path / "conf" / "pipeline"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / f"{name}.yaml").write_text(PIPELINE.format(name=name, extra=textwrap.indent(extra, "    ")))
    return tmp_path / "conf"


def run_py(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, HYDRA_FULL_ERROR="1"))


def settings(tmp_path: Path, data_dir: Path) -> list[str]:
    return [*TINY, f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_dir={data_dir}"]


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pipeline_resumes_after_interruption_and_then_is_up_to_date(tmp_path, data_dir):
    conf = write_pipeline(tmp_path, "one")
    common = settings(tmp_path, data_dir)
    cam_dir = tmp_path / "runs" / "classifier" / "synthetic" / "resnet18" / "default"
    # The pipeline was stopped after its first step had trained: a manual run of that step, fit only.
    first = run_py("stage=classifier", "tasks=[fit]", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = cam_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and not (cam_dir / "cams").exists()

    pipe = [f"hydra.searchpath=[file://{conf}]", "pipeline=one", *common]
    resumed = run_py(*pipe)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-4000:]
    assert "conf/stage/nosuchstage.yaml does not exist" in out
    assert "step cam (stage=classifier): runs (its configuration changed: " in out  # tasks=[fit] -> all tasks
    assert f"resuming from {ckpt}" in out  # the stage resumed its training instead of starting over
    metrics = json.loads((cam_dir / "metrics.json").read_text())
    pipe_dir = tmp_path / "runs" / "pipeline" / "one" / "default"
    summary = json.loads((pipe_dir / "metrics.json").read_text())
    assert summary["cam/cams/val/miou"] == pytest.approx(metrics["cams/val/miou"])
    assert 0.0 <= summary["cam/cams/val/miou"] <= 1.0
    table = (pipe_dir / "summary.md").read_text()
    assert "| cam | classifier | cams/val/miou |" in table
    assert f"{100 * metrics['cams/val/miou']:.2f}" in table
    record = json.loads((pipe_dir / "pipeline.json").read_text())
    assert [(s["id"], s["status"]) for s in record] == [("cam", "ran")]

    before = mtimes(cam_dir)
    again = run_py(*pipe)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-4000:]
    assert "step cam (stage=classifier): up to date" in out
    assert "resuming from" not in out and mtimes(cam_dir) == before  # nothing in the run folder was touched
    assert json.loads((pipe_dir / "pipeline.json").read_text())[0]["status"] == "up to date"
    assert "| cam | classifier | cams/val/miou |" in (pipe_dir / "summary.md").read_text()


@pytest.mark.slow
def test_pipeline_killed_midway_finishes_without_redoing_finished_steps(tmp_path, data_dir):
    """Two steps (the second predicts with the first one's checkpoint); the pipeline is killed during step 2."""
    second = """\
cams2:
  stage: classifier
  overrides:
    - run_name=${run_name}_ms
    - stage.checkpoint=${steps.cam.run_dir}/checkpoints/last.ckpt
    - tasks=[predict,evaluate]
"""
    conf = write_pipeline(tmp_path, "two", second)
    pipe = [f"hydra.searchpath=[file://{conf}]", "pipeline=two", *settings(tmp_path, data_dir)]
    cam_dir = tmp_path / "runs" / "classifier" / "synthetic" / "resnet18" / "default"
    ms_dir = cam_dir.parent / "default_ms"
    proc = subprocess.Popen([sys.executable, "run.py", *pipe], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while not (ms_dir / "config.yaml").is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the pipeline ended before step 2 started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (cam_dir / "metrics.json").is_file() and not (ms_dir / "metrics.json").is_file()
    before = mtimes(cam_dir)
    again = run_py(*pipe)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-4000:]
    assert "step cam (stage=classifier): up to date" in out
    assert "step cams2 (stage=classifier): runs" in out
    assert mtimes(cam_dir) == before
    summary = json.loads((tmp_path / "runs" / "pipeline" / "two" / "default" / "metrics.json").read_text())
    assert {"cam/cams/val/miou", "cams2/cams/val/miou"} <= set(summary)
