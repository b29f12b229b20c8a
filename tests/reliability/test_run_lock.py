"""One writer per run folder (wsss/reliability/run_lock.py): a second writer is refused naming the holder; a
holder that is gone, or the same SLURM job requeued, is taken over; the other DDP ranks of a launch do not
lock."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.reliability.common import finish, run_dir_of, run_in_process, start
from wsss.reliability import run_lock
from wsss.reliability.run_lock import LOCK, RunFolderBusy, hold_run_folder

# the module alone, by its file (the package would import Lightning: seconds per holder)
HOLD = ("import importlib.util as u, sys, time; from pathlib import Path\n"
        "spec = u.spec_from_file_location('run_lock', sys.argv[2]); m = u.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "with m.hold_run_folder(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)\n")


def holder_process(run_dir: Path) -> subprocess.Popen:
    """Another process holding the lock of `run_dir` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), run_lock.__file__], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
    assert proc.stdout.readline().strip() == "held"
    return proc


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(autouse=True)
def outside_slurm(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", *run_lock.RANK_VARIABLES):
        monkeypatch.delenv(name, raising=False)


def test_a_second_writer_is_refused_naming_the_holder_and_takes_over_once_it_is_killed(tmp_path, caplog):
    proc = holder_process(tmp_path)
    try:
        with pytest.raises(RunFolderBusy) as refused:
            with hold_run_folder(tmp_path):
                pytest.fail("entered a folder another process holds")
        message = str(refused.value)
        assert f"pid {proc.pid} on {socket.gethostname()}" in message and str(tmp_path / LOCK) in message
        assert "run_name=" in message  # the way out
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__), hold_run_folder(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {proc.pid}" in caplog.text
    assert (tmp_path / LOCK).read_text() == ""  # released: an empty record is a free folder


def test_a_record_of_a_dead_pid_on_this_host_is_taken_over(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(run_lock, "try_lock", lambda fd: None)  # no record locks here: the record decides
    pid = dead_pid()
    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "slurm_job_id": None,
                                             "started": "then"}))
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__), hold_run_folder(tmp_path):
        pass
    assert f"pid {pid} is no longer running" in caplog.text
    alive = {"host": socket.gethostname(), "pid": os.getppid(), "started": "now"}
    (tmp_path / LOCK).write_text(json.dumps(alive))
    with pytest.raises(RunFolderBusy, match=f"pid {os.getppid()}"), hold_run_folder(tmp_path):
        pass


def test_a_requeued_slurm_job_is_the_same_writer_and_a_running_other_job_is_not(tmp_path, caplog,
                                                                                 monkeypatch):
    record = {"host": "node-that-died", "pid": 4242, "slurm_job_id": "777", "started": "then"}
    (tmp_path / LOCK).write_text(json.dumps(record))
    monkeypatch.setattr(run_lock, "slurm_job_state", lambda job: "RUNNING")
    with pytest.raises(RunFolderBusy, match="SLURM job 777"), hold_run_folder(tmp_path):
        pass
    monkeypatch.setenv("SLURM_JOB_ID", "777")  # the same job, requeued (on another node)
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__), hold_run_folder(tmp_path):
        pass
    assert "it is this SLURM job (777) before its requeue" in caplog.text
    monkeypatch.setenv("SLURM_JOB_ID", "778")
    (tmp_path / LOCK).write_text(json.dumps(record))
    monkeypatch.setattr(run_lock, "slurm_job_state", lambda job: "")  # 777 finished: SLURM no longer lists it
    with hold_run_folder(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["slurm_job_id"] == "778"


def test_the_other_ranks_of_a_launch_do_not_take_the_lock(tmp_path, monkeypatch):
    proc = holder_process(tmp_path)  # rank 0 of this launch
    try:
        for name in ("LOCAL_RANK", "SLURM_PROCID"):
            monkeypatch.setenv(name, "1")
            with hold_run_folder(tmp_path):
                assert json.loads((tmp_path / LOCK).read_text())["pid"] == proc.pid
            monkeypatch.delenv(name)
    finally:
        proc.kill()
        proc.wait()


def test_a_refused_run_leaves_the_holders_temporaries_and_rank_records(tmp_path, data_dir):
    run_dir = tmp_path / "classifier" / "synthetic" / "resnet18" / "busy"
    cams = run_dir / "cams" / "train"
    cams.mkdir(parents=True)
    temporary, shard = cams / ".img0.npz.abc123.tmp", cams / ".written.rank0.json"
    temporary.write_bytes(b"half written"), shard.write_text('["img1"]')
    proc = holder_process(run_dir)
    try:
        with pytest.raises(RunFolderBusy):
            run_in_process(run_dir, data_dir, "tasks=[predict]", "dataset.predict_splits=[train]")
    finally:
        proc.kill()
        proc.wait()
    assert temporary.read_bytes() == b"half written" and shard.read_text() == '["img1"]'


@pytest.mark.slow
def test_two_identical_commands_started_together_one_runs_one_is_refused(tmp_path, data_dir):
    runs = tmp_path / "runs"
    procs = [start(runs, data_dir, "twice", "tasks=[fit]", "stage.max_epochs=1") for _ in range(2)]
    results = [finish(p) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes[0] == 0 and codes[1] != 0, [out[-2000:] for _, out in results]
    refused = next(out for rc, out in results if rc != 0)
    winner = next(p.pid for p, (rc, _) in zip(procs, results) if rc == 0)
    assert "is being written by another run" in refused and f"pid {winner} on" in refused, refused[-3000:]
    assert (run_dir_of(runs, "twice") / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir_of(runs, "twice") / LOCK).read_text() == ""


def test_a_pipeline_holds_its_own_folder(tmp_path, data_dir):
    from tests.pipeline.test_resume import run_py, settings, write_pipeline

    conf = write_pipeline(tmp_path, "one")
    proc = holder_process(tmp_path / "runs" / "pipeline" / "one" / "default")
    try:
        refused = run_py(f"hydra.searchpath=[file://{conf}]", "pipeline=one", *settings(tmp_path, data_dir))
    finally:
        proc.kill()
        proc.wait()
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0 and f"pid {proc.pid} on" in out, out[-3000:]
    assert not (tmp_path / "runs" / "classifier").exists()  # no step started
