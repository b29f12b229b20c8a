"""The xai table files: the Table-4 layout of this run's numbers only (the thesis report adds the thesis)."""
import math

import pytest

from wsss.xai.report import METRIC_KEYS, metrics_of, table_csv, table_markdown, table_rows


def results(values: dict[str, float]) -> dict:
    """One method's results with macro value `values[key]` (0 for the rest)."""
    macro = {k: values.get(k, 0.0) for k in METRIC_KEYS}
    return {"macro": macro, "micro": dict(macro), "per_class": {k: {} for k in METRIC_KEYS}, "pairs": {}, "seconds": 1.0}


RESULTS = {"cam": results({"ic": 30.0, "ad": 20.0}), "gradcam": results({"ic": 40.0, "ad": float("nan")})}


def test_without_the_thesis_one_row_per_metric():
    rows = table_rows(RESULTS, ["cam", "gradcam"])
    assert [label for label, _, _ in rows] == ["%IC ↑", "%AD ↓", "%ADO ↑", "%AR ↑", "%ARO ↓", "F1− ↓", "F1+ ↑"]
    assert rows[0][1] == [30.0, 40.0] and rows[0][2] == {1}  # higher %IC is better
    assert rows[1][2] == {0}  # lower %AD is better; nan never wins


def test_table_files_and_metrics_hold_our_values_only():
    md = table_markdown(RESULTS, ["cam", "gradcam"], "caption").splitlines()
    assert md[0] == "caption" and md[4:6] == ["| %IC ↑ | 30.00 | **40.00** |", "| %AD ↓ | **20.00** | nan |"]
    csv = table_csv(RESULTS, ["cam", "gradcam"]).splitlines()
    assert csv[1:3] == ["%IC ↑,30.00,40.00", "%AD ↓,20.00,nan"] and len(csv) == 8
    got = metrics_of(RESULTS)
    assert got["xai/cam/ic"] == 30.0 and math.isnan(got["xai/gradcam/ad"])
    assert not any("thesis" in k for k in got)
