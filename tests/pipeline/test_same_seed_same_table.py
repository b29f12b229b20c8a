"""The same seed, the same result: the tiny pipeline run twice, each in a fresh folder (its own synthetic data,
runs and processes), gives the same table, value for value. Every step at one epoch (debug=tiny comes after
the experiment's settings of each stage): the suite has no minutes to spare."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

TABLE = "runs/pipeline/wsss/synthetic/resnet18/default/metrics.json"


def tiny_pipeline_table(folder) -> dict:
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WSSS_ROOT", "WSSS_RUNS", "WSSS_DATA")}
    subprocess.run([sys.executable, str(ROOT / "run.py"), "pipeline=wsss", "experiment=synthetic", "debug=tiny",
                    "seed=0"], cwd=folder, env=env, check=True, capture_output=True, timeout=1500)
    return json.loads((folder / TABLE).read_text())


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_the_tiny_pipeline_twice_gives_the_same_table(tmp_path):
    first, second = tiny_pipeline_table(tmp_path / "a"), tiny_pipeline_table(tmp_path / "b")
    steps = {key.split("/")[0] for key in first}
    assert steps == {"classifier", "pnoc", "ccam", "saliency", "affinity", "deeplab"}, sorted(first)
    assert first == second
