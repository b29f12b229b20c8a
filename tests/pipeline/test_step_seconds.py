"""Per-step wall time in the pipeline's table: measured when the step runs, the recorded one when it is up to date."""
import json
import time

import yaml

import wsss.pipeline as pipeline
from wsss.pipeline import Step, execute


def toy_steps(runs):
    plain = {"stage": {"name": "classifier"}, "seed": 0}
    return [Step("cls", "classifier", ["stage=classifier"], runs / "cls", plain, ["*miou"])]


def fake_run_step(seconds: float):
    def run_step(step, cwd, name):  # what a finished child process leaves in its run folder
        time.sleep(seconds)
        step.run_dir.mkdir(parents=True, exist_ok=True)
        (step.run_dir / "config.yaml").write_text(yaml.safe_dump(step.plain))
        (step.run_dir / "metrics.json").write_text(json.dumps({"cams/val/miou": 0.5}))
    return run_step


def seconds_in(out_dir):
    record = json.loads((out_dir / "pipeline.json").read_text())
    table = (out_dir / "summary.md").read_text().splitlines()[-1]
    return record[0]["status"], record[0]["seconds"], table.rstrip(" |").rsplit("| ", 1)[-1]


def test_a_step_that_runs_shows_its_seconds_and_up_to_date_shows_the_recorded_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "run_step", fake_run_step(0.3))
    execute(toy_steps(tmp_path / "runs"), tmp_path / "pipe", tmp_path, "toy", "t")
    status, seconds, shown = seconds_in(tmp_path / "pipe")
    assert status == "ran" and 0.3 <= seconds < 30 and shown == f"{seconds:g}"
    assert json.loads((tmp_path / "runs" / "cls" / "pipeline_seconds.json").read_text())["seconds"] == seconds

    monkeypatch.setattr(pipeline, "run_step", fake_run_step(0.0))  # must not be called
    execute(toy_steps(tmp_path / "runs"), tmp_path / "pipe2", tmp_path, "toy", "t")
    assert seconds_in(tmp_path / "pipe2") == ("up to date", seconds, f"{seconds:g}")


def test_up_to_date_without_a_recorded_time_shows_a_dash(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "run_step", fake_run_step(0.0))
    execute(toy_steps(tmp_path / "runs"), tmp_path / "pipe", tmp_path, "toy", "t")
    (tmp_path / "runs" / "cls" / "pipeline_seconds.json").unlink()  # e.g. the run was made by hand
    execute(toy_steps(tmp_path / "runs"), tmp_path / "pipe2", tmp_path, "toy", "t")
    assert seconds_in(tmp_path / "pipe2") == ("up to date", "-", "-")
