"""One writer per run folder: `<run folder>/run.lock`, held from the start of a run to its end.

The lock file names its holder (host, pid, SLURM job, start time) and carries a POSIX record lock (`lockf`)
for as long as the holder runs, so the kernel releases it when the holder dies, however it dies (not `flock`,
which the forked data-loader workers share and keep for seconds after their parent was killed). A second
writer is refused with one paragraph naming the holder. A lock left by a holder that is gone (a dead pid on
this host, a SLURM job that is no longer running) is taken over with a log line; so is a lock of the same
SLURM job, which is that job requeued (`scontrol requeue` keeps the job id). Where record locks are not
supported (some network file systems), the holder's record alone decides.

Only the launch's rank 0 takes the lock: Lightning's DDP re-executes the command with `LOCAL_RANK` set, and
`srun` starts every task with its `SLURM_PROCID`; the other ranks of one launch are the same writer.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

LOCK = "run.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
LIVE_SLURM_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING"}


class RunFolderBusy(RuntimeError):
    """Another writer holds the run folder."""


def is_launch_rank_zero(environ=os.environ) -> bool:
    """Whether this process is rank 0 of its launch (the one that takes the lock for every rank)."""
    for name in RANK_VARIABLES:
        value = environ.get(name, "0") or "0"
        if value.strip() not in ("0", ""):
            return False
    return True


def slurm_job_id() -> str | None:
    """`<array job>_<task>` for an array task, the job id otherwise, None outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def this_writer() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": slurm_job_id(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def describe(holder: dict) -> str:
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, started {holder.get('started')}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def slurm_job_state(job: str) -> str | None:
    """The job's state per squeue ("" when SLURM no longer lists it), None when SLURM cannot be asked."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return "" if "Invalid job id" in out.stderr else None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def why_stale(holder: dict, me: dict, locked: bool | None) -> str | None:
    """Why a recorded holder is no longer writing (so its lock may be taken over), or None if it may be."""
    if holder.get("slurm_job_id") and holder["slurm_job_id"] == me["slurm_job_id"]:
        return f"it is this SLURM job ({me['slurm_job_id']}) before its requeue"
    if holder.get("host") == me["host"]:
        if str(holder.get("pid")) == str(me["pid"]):
            return None  # this very process: a run nested in a run of the same folder
        if locked:
            return "its process no longer holds the lock"  # the kernel released it: the holder is gone
        if not pid_alive(holder.get("pid", -1)):
            return f"pid {holder.get('pid')} is no longer running"
        return None
    if holder.get("slurm_job_id"):
        state = slurm_job_state(str(holder["slurm_job_id"]))
        if state is not None and state not in LIVE_SLURM_STATES:
            return f"SLURM job {holder['slurm_job_id']} is {state or 'finished'}"
    return None


def busy_message(path: Path, holder: dict | None) -> str:
    who = describe(holder) if holder else "a process that has not recorded itself yet"
    return (f"{path.parent} is being written by another run ({who}; see {path}). Two writers on one run "
            "folder would overwrite each other's checkpoints, artifacts and logs, so this one stops before "
            "touching it. Wait for that run to end, or give this one another run_name=...; if that process "
            f"is gone (e.g. on another machine that was switched off), delete {path} and run again.")


def read_holder(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode(errors="replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"host": "?", "pid": "?", "started": "?", "unreadable": text[:80]}


def try_lock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this file system has no record locks."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None


def acquire(run_dir: Path) -> int:
    """The lock of `run_dir` for this process (an open descriptor), or RunFolderBusy."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        locked = try_lock(fd)
        holder = read_holder(fd)
        me = this_writer()
        if locked is False:
            raise RunFolderBusy(busy_message(path, holder))
        if holder is not None:
            reason = "its record is unreadable" if holder.get("unreadable") else why_stale(holder, me, locked)
            if reason is None:
                raise RunFolderBusy(busy_message(path, holder))
            log.warning("%s: taking over the lock of %s (%s)", run_dir, describe(holder), reason)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        return fd
    except BaseException:
        os.close(fd)
        raise


def release(fd: int) -> None:
    """Empty the record (an empty lock file is a free folder), then let go of the lock."""
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


@contextmanager
def hold_run_folder(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of `run_dir` while the block runs (rank 0 of the launch only)."""
    if not is_launch_rank_zero():
        yield
        return
    fd = acquire(Path(run_dir))
    try:
        yield
    finally:
        release(fd)
