"""The xai table files: the Table-4 layout, and the thesis's values with ours − thesis under each metric row."""
import math

import pytest

from wsss.xai.report import METRIC_KEYS, metrics_of, table_csv, table_markdown, table_rows


def results(values: dict[str, float]) -> dict:
    """One method's results with macro value `values[key]` (0 for the rest)."""
    macro = {k: values.get(k, 0.0) for k in METRIC_KEYS}
    return {"macro": macro, "micro": dict(macro), "per_class": {k: {} for k in METRIC_KEYS}, "pairs": {}, "seconds": 1.0}


RESULTS = {"cam": results({"ic": 30.0, "ad": 20.0}), "gradcam": results({"ic": 40.0, "ad": float("nan")})}
THESIS = {"cam": {"ic": 27.68, "ad": 25.24}}  # Table 4, RN101 on VOC07; the thesis has no Grad-CAM column


def test_without_the_thesis_one_row_per_metric():
    rows = table_rows(RESULTS, ["cam", "gradcam"])
    assert [label for label, _, _ in rows] == ["%IC ↑", "%AD ↓", "%ADO ↑", "%AR ↑", "%ARO ↓", "F1− ↓", "F1+ ↑"]
    assert rows[0][1] == [30.0, 40.0] and rows[0][2] == {1}  # higher %IC is better
    assert rows[1][2] == {0}  # lower %AD is better; nan never wins


def test_thesis_and_difference_rows_under_each_metric():
    rows = table_rows(RESULTS, ["cam", "gradcam"], THESIS)
    assert len(rows) == 21
    (ic, ic_values, _), (thesis, published, best), (diff, differences, _) = rows[:3]
    assert (ic, thesis, diff) == ("%IC ↑", "thesis", "ours − thesis")
    assert published == [27.68, None] and best == set()  # no bold in the thesis's rows
    assert differences[0] == pytest.approx(30.0 - 27.68) and differences[1] is None
    assert rows[5][1][0] == pytest.approx(20.0 - 25.24)
    md = table_markdown(RESULTS, ["cam", "gradcam"], "caption", THESIS).splitlines()
    assert md[4:7] == ["| %IC ↑ | 30.00 | **40.00** |", "| thesis | 27.68 | — |", "| ours − thesis | 2.32 | — |"]
    csv = table_csv(RESULTS, ["cam", "gradcam"], THESIS).splitlines()
    assert csv[1:4] == ["%IC ↑,30.00,40.00", "thesis,27.68,—", "ours − thesis,2.32,—"]


def test_metrics_json_holds_the_thesis_and_ours_minus_thesis():
    got = metrics_of(RESULTS, THESIS)
    assert got["xai/cam/thesis_ic"] == 27.68 and got["xai/cam/thesis_diff_ad"] == pytest.approx(20.0 - 25.24)
    assert not any(k.startswith("xai/gradcam/thesis") for k in got)
    assert not any("thesis" in k for k in metrics_of(RESULTS))
    assert math.isnan(metrics_of(RESULTS)["xai/gradcam/ad"])
