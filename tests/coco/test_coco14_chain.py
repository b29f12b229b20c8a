"""The thesis chain on a tree prepared by `python -m wsss.data.prepare coco14` from a tiny COCO 2014 download
in the released formats (tests/fixtures/coco_layout.py), at tiny scale.

`pipeline=wsss dataset=coco14` and `pipeline=cam_generators dataset=coco14` run end to end: every stage
predicts train2014 and val2014 (the images the prepared id lists hold: unlabelled ones are left out), and
val2014 is scored against the prepared masks; the number of images and pixels scored is checked against the
JSON.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

#: ResNet-18 from scratch, one epoch a stage, 64 px crops, CPU; the synthetic-set tuning of each step
TINY_CHAIN = [
    "experiment=synthetic", "dataset=coco14", "dataset.crop_size=64", "dataset.min_size=56",
    "dataset.max_size=80",
    "stage.max_epochs=1", "stage.batch_size=8", "stage.inference.scales=[1.0]", "++stage.radius=4",
    "++stage.val_split=val2014",   # DeepLab validates on val2014's pseudo masks (its default: VOC's `val`)
    "num_workers=0", "logger=csv", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
]
VAL_MIOU = {"classifier": "cams/val2014/miou", "pnoc": "cams/val2014/miou",
            "ccam": "pseudo_saliency/val2014/fgbg_miou", "saliency": "saliency/val2014/fgbg_miou",
            "affinity": "pseudo_masks/val2014/miou", "deeplab": "predictions/val2014/miou"}


def run_py(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, HYDRA_FULL_ERROR="1", OMP_NUM_THREADS="1"))


def scored_val(root: Path) -> tuple[int, int]:
    """(images, pixels) of val2014 that an evaluation must score: the annotated images, from the JSON."""
    data = json.loads((root / "annotations" / "instances_val2014.json").read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    sizes = [im["height"] * im["width"] for im in data["images"] if im["id"] in annotated]
    return len(sizes), sum(sizes)


@pytest.fixture(scope="module")
def chain(module_tmp):
    from tests.fixtures.coco_layout import make_coco_tree

    base = module_tmp("coco_chain")
    root = make_coco_tree(base / "coco14", train=16, val=8)
    runs = base / "runs"
    common = [*TINY_CHAIN, f"dataset.args.root={root}", f"paths.runs_dir={runs}", f"paths.data_dir={runs}"]
    done = run_py("pipeline=wsss", *common)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    step_dirs = {s["id"]: Path(s["run_dir"]) for s in json.loads(
        (runs / "pipeline/wsss/coco14/resnet18/default/pipeline.json").read_text())}
    return {"runs": runs, "common": common, "stdout": done.stdout, "dirs": step_dirs, "root": root}


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_wsss_pipeline_prints_every_steps_val2014_miou(chain):
    summary = json.loads((chain["runs"] / "pipeline/wsss/coco14/resnet18/default/metrics.json").read_text())
    for step, key in VAL_MIOU.items():
        assert 0.0 < summary[f"{step}/{key}"] <= 1.0, step
        assert f"{100 * summary[f'{step}/{key}']:.2f}" in chain["stdout"], step   # the printed table
    assert set(chain["dirs"]) == set(VAL_MIOU)


def test_val2014_is_scored_against_the_prepared_masks(chain):
    images, pixels = scored_val(chain["root"])
    for step, prefixes in {"classifier": ["cams"], "pnoc": ["cams"], "affinity": ["cams", "rw"]}.items():
        m = metrics_of(chain["dirs"][step])
        for prefix in prefixes:
            assert (m[f"{prefix}/val2014/images"], m[f"{prefix}/val2014/pixels"]) == (images, pixels), step
    for step in ("ccam", "saliency"):
        assert metrics_of(chain["dirs"][step])["saliency/val2014/images"] == images, step
    scores = json.loads((chain["dirs"]["deeplab"] / "evaluation" / "val2014.json").read_text())
    confusion = np.asarray(scores["confusion"])
    assert int(confusion.sum()) == pixels and confusion.shape == (81, 81)
    # the CAMs learned the drawn categories beyond the all-background guess (mIoU ≤ 1 / classes present)
    m = metrics_of(chain["dirs"]["pnoc"])
    present = [v for v in m["cams/val2014/iou"].values() if v == v]
    assert m["cams/val2014/miou"] > 1.0 / len(present)


def test_cam_generators_on_coco_share_the_chain_runs(chain):
    deeplab_only = ("radius", "val_split")   # keys of steps cam_generators does not have
    common = [o for o in chain["common"] if not any(k in o for k in deeplab_only)]
    done = run_py("pipeline=cam_generators", *common)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    steps = {s["id"]: s for s in json.loads(
        (chain["runs"] / "pipeline/cam_generators/coco14/resnet18/default/pipeline.json").read_text())}
    assert steps["classifier"]["status"] == "up to date" and steps["pnoc"]["status"] == "up to date"
    images, pixels = scored_val(chain["root"])
    for step in ("puzzle", "occse", "poc"):
        m = metrics_of(Path(steps[step]["run_dir"]))
        assert steps[step]["status"] == "ran" and 0.0 < m["cams/val2014/miou"] <= 1.0
        assert (m["cams/val2014/images"], m["cams/val2014/pixels"]) == (images, pixels)
        assert f"{100 * m['cams/val2014/miou']:.2f}" in done.stdout, step
