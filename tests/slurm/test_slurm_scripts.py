"""The SLURM launch material without a cluster: array.sbatch line selection (srun faked),
pipeline.sh --dry-run, and the composed Hydra launcher configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_srun(tmp_path: Path) -> dict[str, str]:
    """An environment whose `srun` drops its options and runs the command, as one task would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text('#!/usr/bin/env bash\nwhile [[ ${1:-} == --* ]]; do shift; done\nexec "$@"\n')
    srun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WSSS_"))}
    env["PATH"] = f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}"
    env["WSSS_ROOT"] = str(REPO)
    if (Path(sys.prefix) / "bin" / "activate").is_file():
        env["WSSS_VENV"] = sys.prefix
    env["WSSS_ENTRY"] = "python"
    return env


def _run_array(env: dict[str, str], experiments: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "slurm/array.sbatch"), str(experiments)], env={**env, **extra}, cwd=REPO,
        capture_output=True, text=True, timeout=60,
    )


def _argv_line(tag: str, *args: str) -> str:
    return f"-c \"import sys,json; print(json.dumps(['{tag}', *sys.argv[1:]]))\" " + " ".join(args)


def _printed(result: subprocess.CompletedProcess) -> list[str]:
    return json.loads([ln for ln in result.stdout.splitlines() if ln.startswith('["')][-1])


def test_array_line_selection_skips_comments_and_strips_sbatch_prefix(tmp_path, fake_srun):
    experiments = tmp_path / "exp.txt"
    experiments.write_text(
        "# header\n"
        + _argv_line("zero", "a=1") + "\n\n   # indented comment\n"
        + "--gpus-per-node=4 -- " + _argv_line("one", "'c=[1,2]'", '"d=x y"', "$HOME", "*") + "\n"
    )
    zero = _printed(_run_array(fake_srun, experiments, SLURM_ARRAY_TASK_ID="0"))
    one = _run_array(fake_srun, experiments, SLURM_ARRAY_TASK_ID="1", WSSS_EXTRA="seed=3")
    assert one.returncode == 0, one.stderr
    assert zero == ["zero", "a=1"]
    assert _printed(one) == ["one", "c=[1,2]", "d=x y", "$HOME", "*", "seed=3"]
    # WSSS_LINE (pipeline mode) wins over the array index.
    assert _printed(_run_array(fake_srun, experiments, SLURM_ARRAY_TASK_ID="1", WSSS_LINE="0"))[0] == "zero"


def test_array_errors_name_the_problem(tmp_path, fake_srun):
    experiments = tmp_path / "exp.txt"
    experiments.write_text(_argv_line("zero", "trainer.devices=2") + "\n")
    out_of_range = _run_array(fake_srun, experiments, SLURM_ARRAY_TASK_ID="1")
    assert out_of_range.returncode != 0
    assert "line index 1 out of range" in out_of_range.stderr
    assert "has 1 experiment lines" in out_of_range.stderr
    no_index = _run_array(fake_srun, experiments)
    assert no_index.returncode != 0 and "no line index" in no_index.stderr
    missing = _run_array(fake_srun, tmp_path / "nope.txt", SLURM_ARRAY_TASK_ID="0")
    assert missing.returncode != 0 and "nope.txt' not found" in missing.stderr
    mismatch = _run_array(fake_srun, experiments, SLURM_ARRAY_TASK_ID="0", SLURM_NTASKS_PER_NODE="1")
    assert mismatch.returncode != 0 and "trainer.devices=2 but --ntasks-per-node=1" in mismatch.stderr
    matched = _run_array(fake_srun, experiments, SLURM_ARRAY_TASK_ID="0", SLURM_NTASKS_PER_NODE="2")
    assert matched.returncode == 0, matched.stderr
    no_venv = _run_array(fake_srun, experiments, SLURM_ARRAY_TASK_ID="0", SLURM_NTASKS_PER_NODE="2",
                         WSSS_VENV=str(tmp_path / "novenv"))
    assert no_venv.returncode != 0 and "no virtual environment at WSSS_VENV" in no_venv.stderr


def test_pipeline_dry_run_chains_dependencies(tmp_path):
    stages = tmp_path / "stages.txt"
    stages.write_text(
        "stage=pnoc run_name=a\n# skip\n--gpus-per-node=2 --ntasks-per-node=2 -- stage=cams x=1\nfoo=bar\n"
    )
    result = subprocess.run(
        [str(REPO / "slurm/pipeline.sh"), "--dry-run", "--after", "41", str(stages), "--partition=gpu"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "DRYRUN0 wsss-pnoc stage=pnoc run_name=a",
        "DRYRUN1 wsss-cams stage=cams x=1",
        "DRYRUN2 wsss-step2 foo=bar",
    ]
    commands = [ln for ln in result.stderr.splitlines() if ln.startswith("sbatch")]
    assert len(commands) == 3
    assert "--dependency=afterok:41" in commands[0]
    assert "--dependency=afterok:DRYRUN0" in commands[1] and "WSSS_LINE=1" in commands[1]
    # Per-stage options come after the common ones, so they win.
    assert commands[1].index("--partition=gpu") < commands[1].index("--gpus-per-node=2")
    assert "--dependency=afterok:DRYRUN1" in commands[2] and "--kill-on-invalid-dep=yes" in commands[2]


def _compose_launcher(tmp_path: Path, launcher: str, overrides: list[str]):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "config.yaml").write_text(
        f"trainer: {{devices: 1, num_nodes: 1}}\nhydra:\n  searchpath: [file://{REPO / 'conf'}]\n"
    )
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        overrides = [f"hydra/launcher={launcher}", *overrides]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_launcher_follows_trainer_and_asks_for_the_requeue_signal(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSS_ROOT", "/site/wsss")
    launcher = _compose_launcher(tmp_path, "slurm", ["trainer.devices=4", "trainer.num_nodes=2"])
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 2)
    assert launcher["additional_parameters"]["signal"] == "USR1@90"
    assert launcher["max_num_timeout"] == 0
    assert launcher["setup"] == ["source /site/wsss/slurm/env.sh"]


def test_slurm_local_launcher_is_cpu_only(tmp_path, monkeypatch):
    monkeypatch.delenv("WSSS_ROOT", raising=False)
    launcher = _compose_launcher(tmp_path, "slurm_local", ["trainer.devices=2"])
    assert launcher["partition"] == "debug" and launcher["gpus_per_node"] is None
    assert (launcher["tasks_per_node"], launcher["cpus_per_task"]) == (2, 1)
    assert launcher["additional_parameters"]["signal"] == "USR1@90"
    # Without WSSS_ROOT the setup line points at the launch directory.
    assert launcher["setup"] == [f"source {os.getcwd()}/slurm/env.sh"]
