"""Progress: a bar on a terminal; log lines in logs that are not one (files, CI), forced by WSSS_PROGRESS."""
from __future__ import annotations

import io

import numpy as np

from wsss.progress import progress, shown


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_only_on_a_terminal_and_never_in_ci(monkeypatch):
    monkeypatch.delenv("WSSS_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert shown(Terminal()) and not shown(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not shown(Terminal())
    monkeypatch.setenv("WSSS_PROGRESS", "1")
    assert shown(io.StringIO())


def test_the_bar_is_drawn_and_the_items_pass_unchanged(monkeypatch, capsys):
    monkeypatch.setenv("WSSS_PROGRESS", "1")
    assert list(progress(iter(range(5)), "sweep cams/val", total=5)) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "sweep cams/val" in err and "/5 [" in err
    monkeypatch.setenv("WSSS_PROGRESS", "0")
    assert list(progress(range(3), "x")) == [0, 1, 2] and capsys.readouterr().err == ""


def test_not_on_a_terminal_a_log_line_every_few_seconds_and_at_the_end(monkeypatch, caplog):
    monkeypatch.setenv("WSSS_PROGRESS", "0")
    monkeypatch.setenv("WSSS_PROGRESS_EVERY", "0")  # a line after every item
    with caplog.at_level("INFO", logger="wsss.progress"):
        assert list(progress(range(4), "evaluate preds", total=4)) == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("evaluate preds: 1/4 (25 %), ")
    assert lines[3].startswith("evaluate preds: 4/4 (100 %), ")
    assert lines[-1].startswith("evaluate preds: 4/4 (100 %) done in ") and len(lines) == 5
    caplog.clear()
    monkeypatch.setenv("WSSS_PROGRESS_EVERY", "30")  # a loop shorter than that: no line at all
    assert list(progress(range(4), "x", total=4)) == [0, 1, 2, 3] and not caplog.records


def test_the_pools_and_evaluations_report_their_progress(monkeypatch, caplog, tmp_path):
    """The loops over images outside Lightning go through `progress`: the CRF pools' fill and the DeepLab
    evaluation here (the affinity labels' and the saliency evaluation use it in the same way)."""
    from tests.segmentation.test_evaluate import MaskSplit
    from wsss.artifacts import ArtifactDir
    from wsss.fill import fill
    from wsss.segmentation.evaluate import evaluate_predictions

    monkeypatch.setenv("WSSS_PROGRESS", "0")
    monkeypatch.setenv("WSSS_PROGRESS_EVERY", "0")
    writer, ids = ArtifactDir(tmp_path / "masks", ".png"), ["a", "b", "c"]
    masks = {i: np.zeros((2, 2), np.uint8) for i in ids}
    with caplog.at_level("INFO", logger="wsss.progress"):
        fill(writer, ids, {}, lambda m: ((i, ()) for i in m), lambda: np.zeros((2, 2), np.uint8), {})
        evaluate_predictions(MaskSplit(ids, ("x",), masks), writer.root)
    assert f"write {writer.root}: 3/3 (100 %) done" in caplog.text
    assert f"evaluate {writer.root}: 3/3 (100 %) done" in caplog.text
