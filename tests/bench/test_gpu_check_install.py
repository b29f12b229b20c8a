"""bench/gpu_check.sh installs the ordinary way: a virtualenv, pip from PyPI, or only from a folder of wheels.

A stand-in `python3` records every call instead of creating environments and installing, so the test reads
the pip commands the script would run (seconds, no network)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$0 $*" >> "$CALLS"
if [ "$1" = -m ] && [ "$2" = venv ]; then
  for a in "$@"; do dir=$a; done
  mkdir -p "$dir/bin" && cp "$0" "$dir/bin/python"
fi
exit 0
"""


def run_gpu_check(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PYTHON": str(fake), "CALLS": str(calls), "GPU_CHECK_VENV": str(tmp_path / "venv"),
           "OUT": str(tmp_path / "out"), "GPU_CHECK_WORK": str(tmp_path / "work")}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_online_install_uses_pypi_in_a_fresh_virtualenv(tmp_path):
    done, calls = run_gpu_check(tmp_path, "--", "--only", "ddp")
    assert done.returncode == 0, done.stderr
    venv_python = str(tmp_path / "venv" / "bin" / "python")
    assert calls[0].endswith(f"-m venv {tmp_path / 'venv'}")
    pips = [c for c in calls if " -m pip install " in c]
    assert all(c.startswith(venv_python) and "--no-index" not in c for c in pips)
    assert any("torch==2.14.1" in c for c in pips) and pips[-1].endswith("-e .[test]")
    out, work = tmp_path / "out", tmp_path / "work"
    assert calls[-1] == f"{venv_python} bench/gpu_check.py --out {out} --work {work} --only ddp"


def test_offline_install_reads_only_the_folder_of_wheels(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "x-1.0-py3-none-any.whl").write_bytes(b"")
    done, calls = run_gpu_check(tmp_path, "--wheels", str(wheels), "--system-site-packages")
    assert done.returncode == 0, done.stderr
    assert "--system-site-packages" in calls[0]
    pips = [c for c in calls if " -m pip install " in c]
    assert len(pips) == 1, "with the machine's torch, only wsss is installed"
    assert f"--no-index --find-links {wheels}" in pips[0]


def test_an_empty_wheels_folder_is_refused_with_the_command_that_fills_it(tmp_path):
    (tmp_path / "empty").mkdir()
    done, calls = run_gpu_check(tmp_path, "--wheels", str(tmp_path / "empty"))
    assert done.returncode == 2 and calls == []
    assert "holds no .whl files" in done.stderr and "pip download --dest" in done.stderr
