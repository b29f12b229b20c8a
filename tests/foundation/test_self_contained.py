"""The repository speaks only of itself: no path outside it, no citation of a document it does not ship, no
word about how it was developed. Scans every file git tracks or would track (tests/ excepted: they may name
the patterns, as this file does)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

FORBIDDEN = re.compile(r"\.\./shared|workplace|lent to|sessions|device tool|the issue's|-spec §"
                       r"|framework-notes")


def repository_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    return [root / name for name in sorted(set(listed.stdout.split("\0"))) if name]


def forbidden_lines(root: Path) -> list[str]:
    """`path:line: text` of every forbidden phrase outside tests/."""
    hits = []
    for path in repository_files(root):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("tests/") or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:  # images and other binary files
            continue
        hits += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                 if FORBIDDEN.search(line)]
    return hits


def test_nothing_outside_tests_refers_to_outside_documents_or_to_how_it_was_developed():
    hits = forbidden_lines(ROOT)
    assert not hits, ("these lines cite a document outside the repository or speak of how it was developed; "
                      "cite the thesis (section, equation, table) or upstream code as "
                      "lucasdavid/PNOC@<commit>:<path> instead:\n" + "\n".join(hits))


def test_the_scan_finds_a_planted_hit(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("# pnoc-spec §9 is allowed in tests\n")
    (tmp_path / "notes.md").write_text("clean line\nsee pnoc-spec §9.4\n")
    assert forbidden_lines(tmp_path) == ["notes.md:2: see pnoc-spec §9.4"]
