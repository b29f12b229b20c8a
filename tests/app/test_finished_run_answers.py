"""A repeated command whose run folder holds a finished run of the same configuration prints the recorded
metrics and the run folder without running again, and without importing Lightning (wsss/app.py,
wsss/finished_run.py: the pipeline's rule for an up-to-date step)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from omegaconf import OmegaConf

from tests.helpers import ROOT
from wsss.app import recorded_if_finished
from wsss.pipeline import StepComposer

COMMAND = ["experiment=synthetic", "debug=tiny"]


def paths(tmp_path) -> list[str]:  # the data folder is part of the configuration (dataset.args.root)
    return [f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_dir={tmp_path / 'data'}"]


def finished_run(tmp_path, *extra: str):
    """A run folder as a finished run leaves it: config.yaml, then metrics.json."""
    plain, run_dir = StepComposer()([*COMMAND, *paths(tmp_path), *extra])
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(plain)))
    time.sleep(0.01)
    (run_dir / "metrics.json").write_text(json.dumps({"cams/val/miou": 0.4641}))
    return plain, run_dir


def test_a_finished_run_of_the_same_configuration_answers_from_its_record(tmp_path):
    plain, run_dir = finished_run(tmp_path)
    assert recorded_if_finished(plain, run_dir) == {"cams/val/miou": 0.4641}
    assert recorded_if_finished({**plain, "seed": 1}, run_dir) is None             # another configuration
    assert recorded_if_finished({**plain, "ckpt_path": None}, run_dir) is None     # asked to start over
    debugging = {**plain, "trainer": {**plain["trainer"], "fast_dev_run": True}}
    assert recorded_if_finished(debugging, run_dir) is None
    (run_dir / "config.yaml").touch()  # a later invocation started and did not finish
    os.utime(run_dir / "metrics.json", ns=(0, 0))
    assert recorded_if_finished(plain, run_dir) is None


def test_the_repeated_command_prints_the_record_without_lightning(tmp_path):
    finished_run(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSS_")}
    out = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "run.py"), *COMMAND,
                          *paths(tmp_path)], cwd=tmp_path, env=env, capture_output=True, check=False,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "up to date" in out.stdout and "cams/val/miou" in out.stdout and "run folder:" in out.stdout
    assert "pytorch_lightning" not in out.stderr  # -X importtime lists every module imported
