"""Progress bars: on a terminal, off in logs that are not one (files, CI), forced by WSSS_PROGRESS."""
from __future__ import annotations

import io

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
