"""Nothing a run logged is lost by a rerun or a resume (wsss/reliability/history.py): logs/metrics.csv keeps
every invocation's rows, metrics.json every key with the invocation that produced it, W&B one run id."""
from __future__ import annotations

import csv
import json

import pytest

from tests.reliability.common import run_in_process
from wsss.logging_utils import finish_wandb
from wsss.reliability.history import INVOCATION_KEY, WANDB_ID_FILE, merge_metrics


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield
    finish_wandb(teardown=True)


def rows(run_dir):
    with (run_dir / "logs" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_resume_and_a_rerun_keep_the_csv_rows_the_metrics_and_the_wandb_run(tmp_path, data_dir):
    run_dir = tmp_path / "classifier" / "synthetic" / "resnet18" / "kept"
    common = ["tasks=[fit]", "logger=wandb", "logger.wandb.mode=offline", "trainer.log_every_n_steps=1"]
    first = run_in_process(run_dir, data_dir, *common, "stage.max_epochs=1")
    finish_wandb(teardown=True)
    assert "train/loss" in first and "val/map" in first
    epoch0 = [r for r in rows(run_dir) if r["epoch"] == "0"]
    assert epoch0 and len({r["invocation"] for r in epoch0}) == 1
    run_in_process(run_dir, data_dir, *common, "stage.max_epochs=2")  # resumes for one more epoch
    finish_wandb(teardown=True)
    after = rows(run_dir)
    assert [r for r in after if r["epoch"] == "0"] == epoch0  # the first invocation's rows are still there
    assert {r["epoch"] for r in after} == {"0", "1"} and len({r["invocation"] for r in after}) == 2
    second = json.loads((run_dir / "metrics.json").read_text())
    again = run_in_process(run_dir, data_dir, *common, "stage.max_epochs=2")  # finished: nothing to train
    finish_wandb(teardown=True)
    merged = json.loads((run_dir / "metrics.json").read_text())
    for key in ("train/loss", "val/map", "val/loss"):
        assert merged[key] == second[key] and again[key] == second[key]
        assert merged[INVOCATION_KEY][key] == second[INVOCATION_KEY][key]  # produced by the resume
    assert len(rows(run_dir)) >= len(after)
    ids = {p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*")}
    assert ids == {(run_dir / WANDB_ID_FILE).read_text().strip()}  # three invocations, one W&B run


def test_merge_keeps_old_keys_takes_new_values_and_names_their_invocation(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    monkeypatch.setenv("WSSS_INVOCATION", "one")
    merge_metrics(path, {"a": 1.0, "b": 2.0})
    monkeypatch.setenv("WSSS_INVOCATION", "two")
    merged = merge_metrics(path, {"b": 3.0, "c": 4.0})
    assert merged == {"a": 1.0, "b": 3.0, "c": 4.0}
    assert json.loads(path.read_text())[INVOCATION_KEY] == {"a": "one", "b": "two", "c": "two"}
