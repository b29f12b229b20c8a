""".ci/run must fail, not skip the SLURM tests, when the local cluster cannot start where it should."""
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT


def fake_checkout(tmp_path: Path, cluster_up_rc: int, status_rc: int = 0) -> tuple[Path, dict]:
    """A copy of .ci/run beside a stub local-cluster.sh and Makefile; `id -u` says root, apt-get exists."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    (repo / "slurm").mkdir()
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    (repo / "slurm" / "local-cluster.sh").write_text(
        f'case "$1" in up) echo "[local-cluster] up"; exit {cluster_up_rc};; status) exit {status_rc};; esac\n')
    (repo / "Makefile").write_text("test:\n\t@echo MAKE-TEST-RAN\ndocs:\n\t@echo MAKE-DOCS-RAN\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")
    (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("id", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return repo, env


def ci(repo: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("up_rc,status_rc", [(1, 0), (0, 1)])
def test_a_cluster_that_does_not_start_fails_ci(tmp_path, up_rc, status_rc):
    repo, env = fake_checkout(tmp_path, up_rc, status_rc)
    done = ci(repo, env)
    assert done.returncode == 1
    assert "ci: error: the local SLURM cluster did not start" in done.stderr
    assert "MAKE-TEST-RAN" not in done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_started_cluster_or_an_explicit_opt_out_runs_the_tests(tmp_path):
    repo, env = fake_checkout(tmp_path, 0)
    done = ci(repo, env)
    assert done.returncode == 0 and "MAKE-TEST-RAN" in done.stdout and "MAKE-DOCS-RAN" in done.stdout
    repo, env = fake_checkout(tmp_path / "optout", 1)
    done = ci(repo, {**env, "WSSS_CI_SKIP_SLURM": "1"})
    assert done.returncode == 0 and "MAKE-TEST-RAN" in done.stdout and "will skip" in done.stderr
