"""Thesis Table 8's class statistics and correlations, checked by hand, against numpy and against the thesis's own
published table; the report's files from a tiny `pipeline=cam_generators` run."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT, TINY
from wsss.data.voc import VOC_CLASSES
from wsss.reports.cam_generators import GeneratorRun, pearson, table8_rows
from wsss.reports.class_statistics import ClassStatistics, class_statistics
from wsss.thesis import value


class TinyMasks:
    """Three 2x5 images, classes a, b, c (mask value c+1, 255 ignore)."""
    classes = ("a", "b", "c")
    num_classes = 3
    ids = ["x", "y", "z"]
    masks = {"x": np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 255]], np.uint8),      # a: 3/10
             "y": np.array([[1, 2, 2, 2, 2], [0, 0, 0, 2, 2]], np.uint8),        # a: 1/10, b: 6/10
             "z": np.array([[3, 3, 0, 0, 0], [3, 3, 1, 0, 0]], np.uint8)}        # c: 4/10, a: 1/10
    labels = {"x": [1, 0, 0], "y": [1, 1, 0], "z": [1, 0, 1]}

    def load_mask(self, i):
        return self.masks[i]

    def label(self, i):
        return np.array(self.labels[i], np.float32)


def test_class_statistics_by_hand():
    s = class_statistics(TinyMasks())
    assert s.background_size == pytest.approx((6 / 10 + 3 / 10 + 5 / 10) / 3)
    np.testing.assert_allclose(s.relative_size, [(0.3 + 0.1 + 0.1) / 3, 0.6, 0.4])
    np.testing.assert_allclose(s.cooccurrence, [2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(s.cardinality, [5 / 3, 2.0, 2.0])
    assert list(s.images) == [3, 1, 1]
    assert [s.size(i) for i in range(3)] == ["mid", "large", "large"]  # 16.7 %, 60 %, 40 %: no VOC name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=20), rng.normal(size=20)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    x[3] = np.nan  # pairs with a missing value are left out
    keep = np.arange(20) != 3
    assert pearson(x, y) == pytest.approx(np.corrcoef(x[keep], y[keep])[0, 1], abs=1e-12)


def thesis_table8() -> tuple[ClassStatistics, list[GeneratorRun]]:
    """The thesis's own %S, %C, L and IoU columns, as if our runs had measured them."""
    from wsss.cams.evaluate import SweepResult

    k = list(VOC_CLASSES)
    stats = ClassStatistics(k, value(8, "background", "%S") / 100,
                            np.array([value(8, c, "%S") / 100 for c in k]), np.array([value(8, c, "%C") / 100 for c in k]),
                            np.array([value(8, c, "L") for c in k]), np.ones(20, int))
    runs = []
    for col in ("RA", "P", "Pf", "P-OC", "P-OC+LS", "P-NOC+LS"):
        iou = [value(8, c, col) / 100 for c in ["background", *k]]
        runs.append(GeneratorRun(col, SweepResult([0.1], [0.5], 0.1, 0.5, iou, ["background", *k])))
    return stats, runs


def test_table8_rows_reproduce_the_thesis_arithmetic():
    """Group averages, overall row and correlations computed from the thesis's class rows equal its own
    published rows (up to the rounding of the printed class values; L has one decimal at 1.1-2.6, hence
    the correlations' 1 p.p.)."""
    stats, runs = thesis_table8()
    columns, rows = table8_rows(stats, runs)
    by_name = {r["class"]: r for r in rows}
    assert {"overall", "small", "mid", "large", "singleton", "p-rel", "room", "traffic"} <= set(by_name)
    assert "bottle" not in by_name or by_name["bottle"]["group"] == "bottle"  # a one-class group has no average row
    checked = 0
    for name, tol in [("overall", 0.06), ("small", 0.06), ("mid", 0.06), ("large", 0.06), ("singleton", 0.06),
                      ("p-rel", 0.06), ("room", 0.06), ("traffic", 0.06), ("rho %S", 1.0), ("rho %C", 1.0),
                      ("rho L", 1.0)]:
        for col in columns[3:]:
            published = value(8, name, col)
            if published is None or col in ("%S", "%C", "L") and name.startswith("rho") and published == 100.0:
                continue
            assert by_name[name][col] == pytest.approx(published, abs=tol), (name, col)
            checked += 1
    assert checked > 80
    assert [r["size"] for r in rows[1:21]] == [stats.size(i) for i in range(20)]
    assert rows[3]["group"] == "singleton" and rows[2]["size"] == "small"  # bird; bicycle


@pytest.mark.slow
def test_cam_generators_pipeline_writes_tables_7_8_and_figure_15(tmp_path, data_dir):
    args = [*TINY, "pipeline=cam_generators", f"paths.runs_dir={tmp_path / 'runs'}", f"paths.data_dir={data_dir}",
            "dataset.predict_splits=[train]", "dataset.eval_splits=[train]", "trainer.limit_val_batches=0",
            "stage.max_epochs=2", "trainer.limit_train_batches=1", "stage.evaluation.monitor_train_cam_miou=true",
            "+pipeline.steps.occse.enabled=false", "+pipeline.steps.poc.enabled=false"]  # two generators are enough
    done = subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = tmp_path / "runs" / "pipeline" / "cam_generators" / "synthetic" / "resnet18" / "default"
    steps = ["classifier", "puzzle", "pnoc"]
    table8 = (out / "table8.csv").read_text().splitlines()
    assert table8[0].split(",") == ["class", "group", "size", "%S", "%C", "L", *steps]
    for step in steps:  # the IoU column is the step's own evaluation, in percent
        metrics = json.loads((tmp_path / "runs" / step / "synthetic" / "resnet18" / "default" / "metrics.json").read_text())
        overall = next(line for line in table8 if line.startswith("overall,")).split(",")
        assert float(overall[6 + steps.index(step)]) == pytest.approx(100 * metrics["cams/train/miou"], abs=0.05)
    assert [line.split(",")[0] for line in table8[-3:]] == ["rho %S", "rho %C", "rho L"]
    table7 = (out / "table7.md").read_text()
    for step in steps:  # two monitored epochs per generator
        row = next(line for line in table7.splitlines() if line.startswith(f"| {step} |")).split("|")
        assert all(c.strip() != "-" for c in row[2:4]), row
    assert (out / "figure15.png").stat().st_size > 1000


def test_thesis_columns_beside_the_thesis_runs():
    from wsss.reports.cam_generators import table7_markdown

    stats, runs = thesis_table8()
    ours = runs[-1]
    ours.name, ours.thesis_row, ours.epochs = "pnoc", "RS269 P-NOC+LS", [0.5, 0.6]
    columns, rows = table8_rows(stats, [ours])
    assert columns[-2:] == ["pnoc", "thesis P-NOC+LS"]
    aeroplane = next(r for r in rows if r["class"] == "aeroplane")
    assert aeroplane["thesis P-NOC+LS"] == 59.8 and aeroplane["pnoc"] == pytest.approx(59.8)
    row = next(line for line in table7_markdown([ours], "train").splitlines() if line.startswith("| pnoc |"))
    assert row == "| pnoc | 50.0 | 60.0 | 60.0 | 50.0 | 58.7 | 62.7 |"  # E1 E2 Max TTA, thesis Max and TTA
