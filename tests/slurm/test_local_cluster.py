"""Jobs on the real local SLURM cluster (slurm/local-cluster.sh): array template and submitit launcher.

Skipped as a whole when `sinfo` is missing or does not answer within 5 s. Bring the cluster up with
`sudo slurm/local-cluster.sh up` (about 15 s on a fresh Debian machine, 1 s when installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CPU_ONLY = ["--gpus-per-node=0", "--cpus-per-task=1", "--mem=500M", "--time=5"]


def _cluster_answer() -> str | None:
    """None when the local cluster takes jobs, else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (no sinfo/sbatch); run: sudo slurm/local-cluster.sh up"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 5 s; run: sudo slurm/local-cluster.sh up"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc", "comp")) for s in states):
        found = states or out.stderr.strip()
        return f"no SLURM node takes jobs (sinfo rc={out.returncode}, states={found!r})"
    return None


_reason = _cluster_answer()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(_reason is not None, reason=_reason or ""),
]


def _job_env(**extra: str) -> dict[str, str]:
    """Environment for sbatch: the venv running the tests, so env.sh activates the same one."""
    env = dict(os.environ)
    if (Path(sys.prefix) / "bin" / "activate").is_file():
        env["WSSS_VENV"] = sys.prefix
    env.update(extra)
    return env


def _sbatch_wait(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sbatch", "--wait", "--parsable", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )


def _final_state(job_id: str, deadline_s: float = 240.0) -> str:
    """Polls `scontrol show job` until the job leaves PENDING/RUNNING; returns its JobState."""
    stop = time.monotonic() + deadline_s
    while True:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                               timeout=30).stdout
        state = shown.split("JobState=")[1].split()[0] if "JobState=" in shown else "UNKNOWN"
        if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") or time.monotonic() > stop:
            return state
        time.sleep(1)


def _writer_line(out: Path, *args: str) -> str:
    """An experiments-file line for WSSS_ENTRY=python that records task id, argv and venv in `out`."""
    code = (
        "import os,sys,json; open(sys.argv[1],'w').write(json.dumps("
        "{'task': os.environ['SLURM_ARRAY_TASK_ID'], 'argv': sys.argv[2:], 'prefix': sys.prefix}))"
    )
    return f'-c "{code}" {out} ' + " ".join(args)


def test_array_template_runs_one_line_per_task(tmp_path: Path):
    import json

    experiments = tmp_path / "experiments.txt"
    experiments.write_text(
        "# comment lines and blank lines are not counted\n\n"
        + _writer_line(tmp_path / "out0.json", "stage=first", "'a=[1,2]'") + "\n"
        + _writer_line(tmp_path / "out1.json", "stage=second", '"b=x y"', "$HOME") + "\n"
    )
    env = _job_env(WSSS_ENTRY="python", WSSS_EXTRA="seed=7")
    result = _sbatch_wait(
        ["--array=0-1", *CPU_ONLY, f"--output={tmp_path}/%x_%A_%a.out", "slurm/array.sbatch",
         str(experiments)],
        env,
    )
    array_id = result.stdout.strip().split(";")[0]
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.out")}
    assert result.returncode == 0, (result.stderr, logs)

    out0 = json.loads((tmp_path / "out0.json").read_text())
    out1 = json.loads((tmp_path / "out1.json").read_text())
    assert out0["task"] == "0" and out1["task"] == "1"
    # Quotes are honoured, nothing is expanded, WSSS_EXTRA is appended to every line.
    assert out0["argv"] == ["stage=first", "a=[1,2]", "seed=7"]
    assert out1["argv"] == ["stage=second", "b=x y", "$HOME", "seed=7"]
    if "WSSS_VENV" in env:
        assert Path(out0["prefix"]).resolve() == Path(env["WSSS_VENV"]).resolve()

    for task in (0, 1):
        log = (tmp_path / f"wsss_{array_id}_{task}.out").read_text()
        assert f"line {task} of {experiments}" in log
        assert "exit status 0" in log


def test_array_template_rejects_devices_ntasks_mismatch(tmp_path: Path):
    experiments = tmp_path / "experiments.txt"
    marker = tmp_path / "ran.json"
    experiments.write_text(_writer_line(marker, "trainer.devices=2") + "\n")
    log = tmp_path / "mismatch.out"
    result = _sbatch_wait(
        ["--array=0-0", "--ntasks-per-node=1", *CPU_ONLY, f"--output={log}", "slurm/array.sbatch",
         str(experiments)],
        _job_env(WSSS_ENTRY="python"),
    )
    assert result.returncode != 0
    assert "trainer.devices=2 but --ntasks-per-node=1" in log.read_text()
    assert not marker.exists()


def test_pipeline_chain_runs_in_order_and_stops_after_failure(tmp_path: Path):
    first, second, never = (tmp_path / n for n in ("first", "second", "never"))
    stages = tmp_path / "stages.txt"
    check_first = f"assert pathlib.Path('{first}').exists()"
    stages.write_text(textwrap.dedent(f"""\
        -c "import time,pathlib; time.sleep(2); pathlib.Path('{first}').write_text('1')" stage=a
        -c "import pathlib; {check_first}; pathlib.Path('{second}').write_text('2')" stage=b
        -c "raise SystemExit(3)" stage=c
        -c "import pathlib; pathlib.Path('{never}').write_text('3')" stage=d
        """))
    env = _job_env(WSSS_ENTRY="python", WSSS_LOG_DIR=str(tmp_path / "logs"))
    submitted = subprocess.run(
        [str(REPO / "slurm/pipeline.sh"), str(stages), *CPU_ONLY], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    ids = [line.split()[0] for line in submitted.stdout.splitlines()]
    assert len(ids) == 4 and all(i.isdigit() for i in ids)
    # The last stage never runs: slurmctld cancels it once stage c fails (--kill-on-invalid-dep).
    assert _final_state(ids[3]) == "CANCELLED"
    assert [_final_state(i) for i in ids[:3]] == ["COMPLETED", "COMPLETED", "FAILED"]
    assert first.read_text() == "1" and second.read_text() == "2"
    assert not never.exists()
    assert "exit status 3" in (tmp_path / "logs" / f"wsss-c_{ids[2]}.out").read_text()


def test_submitit_launcher_multirun_runs_ranks_on_cluster(tmp_path: Path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(textwrap.dedent(f"""\
        x: 0
        trainer: {{devices: 1, num_nodes: 1}}
        hydra:
          searchpath: [file://{REPO / 'conf'}]
          sweep: {{dir: {tmp_path / 'sweep'}, subdir: '${{hydra.job.num}}'}}
        """))
    (tmp_path / "app.py").write_text(textwrap.dedent("""\
        import os
        from pathlib import Path
        import hydra
        from hydra.core.hydra_config import HydraConfig
        from wsss.resolvers import register  # the launcher config of conf/ uses wsss's resolvers

        register()

        @hydra.main(version_base="1.3", config_path="conf", config_name="config")
        def main(cfg):
            out = Path(HydraConfig.get().runtime.output_dir)
            (out / f"rank{os.environ['SLURM_PROCID']}.txt").write_text(
                f"{cfg.x} {os.environ['SLURM_NTASKS']} {os.environ.get('VIRTUAL_ENV')}")

        if __name__ == "__main__":
            main()
        """))
    env = _job_env(WSSS_ROOT=str(REPO))
    run = subprocess.run(
        [sys.executable, "app.py", "-m", "hydra/launcher=slurm_local", "x=1,2", "trainer.devices=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for num, x in ((0, 1), (1, 2)):
        for rank in (0, 1):
            value, ntasks, venv = (tmp_path / "sweep" / str(num) / f"rank{rank}.txt").read_text().split()
            assert (value, ntasks) == (str(x), "2")
            if "WSSS_VENV" in env:  # slurm/env.sh ran in the job and activated the venv
                assert Path(venv).resolve() == Path(env["WSSS_VENV"]).resolve()
    scripts = list((tmp_path / "sweep" / ".submitit").rglob("*_submission.sh"))
    assert scripts
    text = scripts[0].read_text()
    assert "#SBATCH --signal=USR1@90" in text and "USR2" not in text
    assert "#SBATCH --ntasks-per-node=2" in text
    assert f"source {REPO}/slurm/env.sh" in text
