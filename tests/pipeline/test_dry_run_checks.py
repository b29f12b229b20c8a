"""`pipeline=wsss ... pipeline.dry_run=true` checks what a real run needs (wsss/preflight.py): on the tree
`python -m wsss.data.prepare voc12` makes from the tests' tiny archives every step is runnable; without the
data folder, or with weights neither cached nor downloadable, each step says `would fail:` and why."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.voc_archives import make_voc12_archives
from tests.helpers import ROOT
from wsss.data.prepare.__main__ import main as prepare_main
from wsss.data.voc import VOCDataset

pytestmark = pytest.mark.slow   # three dry runs of the six-step pipeline, ~10 s of CPU each

STEPS = ["classifier", "pnoc", "ccam", "saliency", "affinity", "deeplab"]
TINY = ["pipeline=wsss", "experiment=synthetic", "dataset=voc12", "backbone=resnet18",
        "pipeline.dry_run=true"]


@pytest.fixture(scope="module")
def voc_root(module_tmp):
    folder = module_tmp("prepared")
    archives = make_voc12_archives(folder / "archives")
    root = folder / "VOC2012"
    assert prepare_main(["voc12", "--voc", str(archives.voc), "--sbd", str(archives.sbd), "--out", str(root),
                         "--no-verify"]) == 0
    return root


def dry_run(runs, *overrides, **env):
    done = subprocess.run([sys.executable, "run.py", *TINY, f"paths.runs_dir={runs}", *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, **env))
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((runs / "pipeline/wsss/voc12/resnet18/default/dry_run.json").read_text())
    return done.stdout, record


def cam_bytes(root, split):
    """The estimate written out: mean pixels × (present classes + 1) float16 planes, + 1 KiB of headers."""
    ds = VOCDataset(root, split)
    pixels = np.mean([np.prod(Image.open(ds.image_path(i)).size) for i in ds.ids])
    return int(pixels * sum(int(ds.label(i).sum()) + 1 for i in ds.ids) * 2) + 1024 * len(ds.ids)


def test_every_step_is_runnable_on_the_prepared_tree(tmp_path, voc_root):
    out, record = dry_run(tmp_path, f"dataset.args.root={voc_root}", "backbone.pretrained=false")
    assert sorted(record) == sorted(STEPS)
    for step in STEPS:
        assert f"{step}: runs (not run yet)" in out and record[step]["problems"] == [], record[step]
        assert any(n.startswith("data: train_aug 12 images") for n in record[step]["notes"]), record[step]
    assert record["classifier"]["disk_bytes"] == cam_bytes(voc_root, "train_aug") + cam_bytes(voc_root, "val")
    assert all(record[s]["disk_bytes"] > 0 for s in STEPS)
    assert not (tmp_path / "classifier").exists()   # nothing ran


def test_without_the_data_folder_every_step_would_fail_and_says_how_to_make_it(tmp_path):
    out, record = dry_run(tmp_path, f"dataset.args.root={tmp_path / 'absent'}", "backbone.pretrained=false")
    for step in STEPS:
        status = record[step]["status"]
        missing = f"would fail: data: dataset.args.root='{tmp_path / 'absent'}' is not a folder"
        assert status.startswith(missing), status
        assert "python -m wsss.data.prepare voc12" in status and f"{step}: {status}" in out


def test_with_weights_neither_cached_nor_downloadable_every_step_would_fail(tmp_path, voc_root):
    hub = tmp_path / "empty_hub"
    hub.mkdir()
    out, record = dry_run(tmp_path, f"dataset.args.root={voc_root}", "backbone.pretrained=true",
                          HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub))
    for step in STEPS:
        status = record[step]["status"]
        assert status.startswith("would fail: weights: the ImageNet weights of backbone resnet18"), status
        assert str(hub) in status and "python -m wsss.weights resnet18" in status
        assert f"{step}: {status}" in out
