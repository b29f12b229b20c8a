"""mIoU of PNG predictions against GT (brute-force reference) and the Table-11 layout."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from wsss.artifacts import ArtifactDir, atomic_write_json
from wsss.segmentation.evaluate import (SegmentationScores, evaluate_predictions, iou_table_csv,
                                        iou_table_markdown, main, scores_path)


@dataclass
class MaskSplit:
    """Just what `evaluate_predictions` reads of a data set split."""
    ids: list
    classes: tuple
    masks: dict

    @property
    def num_classes(self):
        return len(self.classes)

    def load_mask(self, image_id):
        return self.masks[image_id]

    def mask_path(self, image_id):
        return Path(f"{image_id}.png")


def brute_force_iou(preds: list, masks: list, k: int) -> list[float]:
    out = []
    for c in range(k):
        tp = fp = fn = 0
        for p, g in zip(preds, masks):
            for pv, gv in zip(p.ravel(), g.ravel()):
                if gv == 255:
                    continue
                tp += int(pv == c and gv == c)
                fp += int(pv == c and gv != c)
                fn += int(pv != c and gv == c)
        out.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    return out


def test_scores_match_a_per_pixel_loop(tmp_path):
    rng = np.random.default_rng(0)
    classes = ("a", "b", "c", "d")  # class "d" (index 4) is never drawn: nan IoU, out of the mean
    ids = [f"im{i}" for i in range(3)]
    masks = {i: rng.choice([0, 1, 2, 3, 255], size=(9, 11), p=[0.4, 0.2, 0.2, 0.1, 0.1]).astype(np.uint8) for i in ids}
    preds = {i: np.where(rng.random((9, 11)) < 0.7, np.where(masks[i] == 255, 0, masks[i]),
                         rng.integers(0, 4, (9, 11))).astype(np.uint8) for i in ids}
    out = ArtifactDir(tmp_path, ".png")
    for i in ids:
        out.write_png(i, preds[i], palette=True)
    scores = evaluate_predictions(MaskSplit(ids, classes, masks), tmp_path)
    expected = brute_force_iou([preds[i] for i in ids], [masks[i] for i in ids], 5)
    np.testing.assert_allclose(scores.iou, expected, rtol=1e-12)
    assert math.isnan(scores.iou[4])
    assert scores.miou == pytest.approx(np.nanmean(expected))
    assert scores.classes == ["background", *classes]
    assert np.asarray(scores.confusion).sum() == sum(int((m != 255).sum()) for m in masks.values())


def test_shape_mismatch_names_the_file(tmp_path):
    ArtifactDir(tmp_path, ".png").write_png("x", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="x.png"):
        evaluate_predictions(MaskSplit(["x"], ("a",), {"x": np.zeros((4, 4), np.uint8)}), tmp_path)


def test_table_layout_has_classes_as_columns():
    rows = {"P-OC": SegmentationScores(["background", "cat", "dog"], [0.9, 0.5, math.nan]),
            "GT": SegmentationScores(["background", "cat", "dog"], [1.0, 0.75, 0.5])}
    md = iou_table_markdown(rows).splitlines()
    assert md[0] == "| method | background | cat | dog | avg. |"
    assert md[2] == "| P-OC | 90.0 | 50.0 | – | 70.0 |"
    assert md[3] == "| GT | 100.0 | 75.0 | 50.0 | 75.0 |"
    csv = iou_table_csv(rows).splitlines()
    assert csv[0] == "method,background,cat,dog,miou"
    assert csv[1] == "P-OC,0.9000,0.5000,,0.7000"
    with pytest.raises(ValueError, match="classes"):
        iou_table_markdown({**rows, "other": SegmentationScores(["background", "cow", "dog"], [1, 1, 1])})


def test_command_line_table_merges_runs(tmp_path, capsys):
    for name, iou in (("pseudo", [0.8, 0.4]), ("gt", [0.9, 0.7])):
        atomic_write_json(scores_path(tmp_path / name, "val"), {"classes": ["background", "cat"], "iou": iou})
    main(["--split", "val", "--csv", str(tmp_path / "t.csv"), f"CAM masks={tmp_path / 'pseudo'}", str(tmp_path / "gt")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| CAM masks | 80.0 | 40.0 | 60.0 |"
    assert lines[3] == "| gt | 90.0 | 70.0 | 80.0 |"
    assert (tmp_path / "t.csv").read_text().splitlines()[2] == "gt,0.9000,0.7000,0.8000"
