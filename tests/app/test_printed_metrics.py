"""The metrics table at the end of a run: rates in percent beside their name, other numbers as they are, and
a stage's own table (the XAI benchmark's) not printed a second time."""
from __future__ import annotations

import re

from wsss.app import print_metrics


def test_rates_are_printed_in_percent_and_nothing_else_is(capsys):
    print_metrics({"cams/val/miou": 0.4641, "val/map": 0.675, "train/loss": 2.0305, "cams/val/count": 8,
                   "cams/val/best_threshold": 0.25, "per_class": {"a": 0.1}}, "t")
    out = capsys.readouterr().out
    assert "46.41 %" in out and "67.50 %" in out and "0.4641" not in out
    assert "2.0305" in out and "0.2500" in out and re.search(r"cams/val/count +│ +8 │", out)
    assert "per_class" not in out


def test_the_xai_table_is_printed_once(capsys):
    print_metrics({"xai/gradcam/miou": 0.3, "val/f1": 0.8}, "t", stage="xai")
    out = capsys.readouterr().out
    assert "xai/gradcam" not in out and "80.00 %" in out


def test_the_run_folder_is_printed_quoted_for_the_shell(capsys):
    from wsss.app import print_run_folder

    print_run_folder("/tmp/runs/multirun/x{a,b}/0_lr=0.1")
    assert capsys.readouterr().out == "run folder: '/tmp/runs/multirun/x{a,b}/0_lr=0.1'\n"
