"""`python run.py -m ...` from a fresh working folder, with the default paths (no paths.* override).

The jobs run `+fetch_weights=true` on a backbone without pretrained weights: Hydra creates every job folder
and the sweep callback writes its record and summary, while the job itself does nothing (a second at most).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT
from wsss.sweep_dirs import job_dir, sweep_id
from wsss.sweep_record import SweepRecord

SHELL_SAFE = re.compile(r"^[A-Za-z0-9._+=,-]+$")


def sweep(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSS_")}
    command = [sys.executable, str(ROOT / "run.py"), "-m", *overrides, "debug=tiny", "+fetch_weights=true"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def sweep_folders(cwd: Path) -> list[Path]:
    return sorted((cwd / "runs" / "multirun" / "classifier" / "synthetic" / "resnet18").iterdir())


def test_a_sweep_with_default_paths_writes_one_folder_per_sweep(tmp_path):
    first = sweep(tmp_path, "stage.lr=0.05,0.1")
    assert first.returncode == 0, first.stderr[-3000:]
    [folder] = sweep_folders(tmp_path)
    assert re.fullmatch(r"default-[0-9a-f]{8}", folder.name), folder.name
    assert sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "0_lr=0.05", "1_lr=0.1"]
    summary = (folder / "sweep_summary.md").read_bytes()
    assert SweepRecord.load(folder).id == folder.name.split("-")[-1]

    second = sweep(tmp_path, "stage.lr=0.2,0.3", "seed=0,1")
    assert second.returncode == 0, second.stderr[-3000:]
    folders = sweep_folders(tmp_path)
    assert len(folders) == 2 and (folder / "sweep_summary.md").read_bytes() == summary  # nothing overwritten
    [other] = [f for f in folders if f != folder]
    jobs = sorted(p.name for p in other.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0_lr=0.2,seed=0", "1_lr=0.2,seed=1", "2_lr=0.3,seed=0", "3_lr=0.3,seed=1"]


def test_a_job_folder_is_its_number_and_the_swept_values_only(tmp_path):
    SweepRecord(id="x", group="g", swept=["stage.lr", "stage.oc.lr", "note"]).save(tmp_path)
    name = job_dir(str(tmp_path), 3, ["stage.lr=0.012345678901", "stage.oc.lr=0.1", "note=a b/{c}", "seed=1"])
    assert name == "3_stage.lr=0.01235,oc.lr=0.1,note=a-b--c-"
    assert SHELL_SAFE.match(name)
    long = job_dir(str(tmp_path), 0, ["note=" + "x" * 300])
    assert len(long) <= 120 and long.startswith("0_note=xxx") and SHELL_SAFE.match(long)
    assert job_dir(str(tmp_path / "no-record"), 5, ["seed=1"]) == "5_seed=1"  # no sweep.json: every override


def test_the_sweep_id_is_the_commands_hash():
    first = sweep_id(["stage.lr=0.05,0.1"])
    assert first == sweep_id(["stage.lr=0.05,0.1"]) != sweep_id(["stage.lr=0.1,0.05"])
    assert re.fullmatch(r"[0-9a-f]{8}", sweep_id([]))
