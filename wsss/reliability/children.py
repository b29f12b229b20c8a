"""A child process that does not outlive its parent (a pipeline's step).

`subprocess.run` leaves the child running when the parent is killed (`kill -9`, an OOM kill): the step then
trains on as an orphan and races the rerun of the pipeline. Here the child asks the kernel for SIGTERM when
its parent dies (Linux's parent-death signal; SIGTERM saves `last.ckpt` at the next step and exits, see
signals.py), and when the parent leaves the wait by an exception (Ctrl-C, a signal turned into SystemExit)
it stops the child itself: SIGTERM, then SIGKILL after `grace_s`.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from typing import Callable

PR_SET_PDEATHSIG = 1


def parent_death_signal(parent: int, signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `signum` when `parent` dies (None where unsupported)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request: too late for the kernel to tell
            os.kill(os.getpid(), signum)

    return arm


def run_child(command: list[str], grace_s: float = 30.0, **popen) -> int:
    """Run `command` to its end and return its exit status; it stops when this process dies or is stopped."""
    proc = subprocess.Popen(command, preexec_fn=parent_death_signal(os.getpid()), **popen)
    try:
        return proc.wait()
    except BaseException:
        stop(proc, grace_s)
        raise


def stop(proc: subprocess.Popen, grace_s: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
