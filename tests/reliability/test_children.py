"""A pipeline's step does not outlive the pipeline (wsss/reliability/children.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from wsss.reliability import children

# the parent: loads children.py by its file (no Lightning import); its child records its pid and sleeps
PARENT = ("import importlib.util as u, sys\n"
          "spec = u.spec_from_file_location('children', sys.argv[1]); m = u.module_from_spec(spec)\n"
          "spec.loader.exec_module(m)\n"
          "code = 'import os, sys, time; open(sys.argv[1], \"w\").write(str(os.getpid())); time.sleep(120)'\n"
          "sys.exit(m.run_child([sys.executable, '-c', code, sys.argv[2]]))\n")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper has ended
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_killing_the_parent_with_sigkill_ends_its_child(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, children.__file__, str(pid_file)])
    try:
        assert wait_until(lambda: pid_file.is_file() and pid_file.read_text(), 60), "the child never started"
        child = int(pid_file.read_text())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_until(lambda: not alive(child), 10), "the step outlived the killed pipeline"
    finally:
        if pid_file.is_file() and pid_file.read_text() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_an_exception_in_the_parent_while_waiting_stops_the_child(monkeypatch):
    started = []
    real_popen = subprocess.Popen

    class Interrupted(subprocess.Popen):
        def wait(self, timeout=None):
            if timeout is None and not started:
                started.append(self.pid)
                raise KeyboardInterrupt  # Ctrl-C while the step runs
            return super().wait(timeout)

    monkeypatch.setattr(children.subprocess, "Popen", Interrupted)
    try:
        children.run_child([sys.executable, "-c", "import time; time.sleep(120)"], grace_s=5)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(children.subprocess, "Popen", real_popen)
    assert started and not alive(started[0])


def test_the_exit_status_is_the_childs():
    assert children.run_child([sys.executable, "-c", "raise SystemExit(3)"]) == 3
