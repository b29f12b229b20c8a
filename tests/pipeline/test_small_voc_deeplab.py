"""DeepLab learns on a small set of a user's own: 80 train_aug / 20 val images, 20 classes
(tests/fixtures/voc_small.py), at the synthetic recipe's budget (conf/pipeline/wsss.yaml). From scratch it
predicted background everywhere; its backbone now starts from the CAM stage's. The steps between the
classifier and the affinity step are left out to keep the test short: DeepLab's recipe is the same."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.fixtures.voc_small import make_small_voc, small_voc_overrides
from tests.helpers import ROOT
from wsss.data.voc import VOCDataset

pytestmark = pytest.mark.slow


def all_background_miou(root, split: str) -> float:
    """Independent of wsss.metrics: IoU of background = its share of labelled pixels, 0 for each present class."""
    ds = VOCDataset(root, split)
    counts = np.zeros(21, np.int64)
    for image_id in ds.ids:
        m = ds.load_mask(image_id)
        counts += np.bincount(m[m != 255].ravel(), minlength=21)[:21]
    return counts[0] / counts.sum() / int((counts > 0).sum())


@pytest.mark.xfail(reason="not reached yet: on ground truth of such a set the synthetic DeepLab recipe gets 13 % "
                          "val mIoU at 100 steps (docs/synthetic.md)", strict=False)
def test_synthetic_pipeline_deeplab_learns_on_a_small_voc_set(tmp_path):
    root = make_small_voc(tmp_path / "VOC2012", train_aug=80, val=20, seed=1)
    runs = tmp_path / "runs"
    args = ["pipeline=wsss", "experiment=synthetic", *small_voc_overrides(root), f"paths.runs_dir={runs}",
            f"paths.data_dir={runs}", "pipeline.steps.pnoc.enabled=false", "pipeline.steps.ccam.enabled=false",
            "pipeline.steps.saliency.enabled=false", "num_workers=0", "logger=csv", "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false"]
    done = subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    summary = json.loads((runs / "pipeline/wsss/voc12/resnet18/default/metrics.json").read_text())
    pseudo, deeplab = summary["affinity/pseudo_masks/val/miou"], summary["deeplab/predictions/val/miou"]
    trivial = all_background_miou(root, "val")
    assert deeplab >= trivial + 0.15, (deeplab, trivial)
    assert deeplab >= pseudo - 0.05, (deeplab, pseudo)
    assert "LEARNED NOTHING" not in done.stdout
