"""Every `python run.py ...` command of README.md, docs/*.md and slurm/ RUNS as written, in the order written,
with `debug=tiny` appended, in a fresh working folder (the repository's files copied to a temporary folder, as
a clone has them) with no `paths.*` override: the runs, data and sweeps land where a new user's would.

Which commands: the lines of fenced code blocks of the Markdown files and the comment lines of slurm/*.sh and
*.sbatch (collected by tests/docs/test_doc_commands.py, which composes them all), file by file
(README.md, then docs/*.md, then slurm/), top to bottom. Inline `python run.py` spans of the prose are
composed there, not run here.

Commands that cannot run here as written are still checked, the closest way this machine allows:
- a placeholder (`<VOC2012>`, `<stage>`), `...`, `[optional]` brackets or a shell variable, a data folder
  typed (`dataset.args.root=...`: real data, or one an earlier non-run.py line makes), or a line of an
  experiments file (overrides without `python run.py`): composed only (`--cfg job`), a placeholder as a plain
  string;
- a backbone typed on the command line other than ResNet-18/50 (ResNeSt-269, EfficientNet-B6, VGG-16):
  composed only (`--cfg job`): from scratch on the CPU it would cost minutes, and the recipes' weights are not
  cached;
- `pipeline=...` with a real-data experiment (anything but synthetic*): its dry run (`pipeline.dry_run=true`),
  which composes every step; the synthetic pipelines run in full;
- an Optuna search (`hparams_search=...`): two trials (`hydra.sweeper.n_trials=2` replaces the typed budget);
- `hydra/launcher=slurm...`: run on the local SLURM cluster (slurm/local-cluster.sh) when it answers, composed
  only when it does not; one naming a partition the local cluster lacks (`hydra.launcher.partition=gpu`) is
  composed only;
- `trainer=ddp` (4 GPUs) runs as is: debug=tiny puts the trainer on one CPU device. `sbatch` lines themselves
  (slurm/array.sbatch with an experiments file) are exercised by tests/slurm.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.test_doc_commands import KEPT, DocCommand, collect_file, overrides_of, variants
from tests.helpers import ROOT

SMALL_BACKBONES = {"resnet18", "resnet50"}
OPTUNA_TRIALS = "hydra.sweeper.n_trials=2"


def doc_files(root: Path) -> list[Path]:
    slurm = root / "slurm"
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted(slurm.glob("*.md")),
             *sorted(slurm.glob("*.sbatch")), *sorted(slurm.glob("*.sh"))]
    return [f for f in files if f.is_file()]


def fenced_commands(root: Path) -> list[DocCommand]:
    """The commands of code blocks (and script comments), in file order, then line order."""
    out = []
    for path in doc_files(root):
        lines = fenced_lines(path) if path.suffix == ".md" else None
        found = [c for c in collect_file(path, root) if lines is None or line_of(c) in lines]
        out += sorted(found, key=line_of)
    return out


def line_of(cmd: DocCommand) -> int:
    return int(cmd.where.rsplit(":", 1)[1])


def fenced_lines(path: Path) -> set[int]:
    """1-based numbers of the lines inside the fenced code blocks of a Markdown file."""
    inside, fence = set(), False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            fence = not fence
        elif fence:
            inside.add(n)
    return inside


@dataclass
class Plan:
    argv: list[str]          # run.py arguments
    how: str                 # run | compose | dry run | slurm | slurm compose


def value_of(args: tuple[str, ...], key: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0].lstrip("+~") == key), None)


def composed_only(args: tuple[str, ...]) -> list[str]:
    """`--cfg job` of the command (a sweep at its first values: --cfg does not sweep)."""
    overrides, _ = overrides_of(args)
    return [*variants(overrides)[0], "debug=tiny", "--cfg", "job"]


def plan_of(cmd: DocCommand) -> Plan:
    args = cmd.args
    slurm = any(a.startswith("hydra/launcher=slurm") for a in args)
    unrunnable = any(KEPT.search(a) or a == "..." or a.startswith("[") or a.endswith("]") and "[" not in a
                     or a.startswith("$") for a in args)
    unrunnable |= not cmd.text.startswith("python") or value_of(args, "dataset.args.root") is not None
    backbone = value_of(args, "backbone")
    local_partition = value_of(args, "hydra.launcher.partition") in (None, "debug")
    if unrunnable or (backbone and backbone not in SMALL_BACKBONES) or (slurm and not local_partition):
        return Plan(composed_only(args), "slurm compose" if slurm else "compose")
    argv = [*args, "debug=tiny"]
    if slurm:
        return Plan(argv, "slurm")
    experiment = value_of(args, "experiment") or ""
    real_data = not experiment.startswith("synthetic")
    if value_of(args, "pipeline") and real_data and "pipeline.dry_run=true" not in args:
        return Plan([*argv, "pipeline.dry_run=true"], "dry run")
    if value_of(args, "hparams_search"):
        return Plan([*(a for a in argv if not a.startswith("hydra.sweeper.n_trials=")), OPTUNA_TRIALS], "run")
    return Plan(argv, "run")


def fresh_copy(dest: Path) -> Path:
    """The repository's files (tracked, and new ones git does not ignore) in `dest`, without runs or data."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def user_env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSS_")}
    env["PYTHONPATH"] = str(repo)  # the copy's code, not an installed one
    if (Path(sys.prefix) / "bin" / "activate").is_file():
        env["WSSS_VENV"] = sys.prefix  # slurm/env.sh activates the interpreter running the tests
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_all(repo: Path, commands: list[DocCommand], hows: set[str], timeout: int = 600) -> list[str]:
    failures, started = [], time.time()
    for cmd in commands:
        plan = plan_of(cmd)
        if plan.how == "slurm" and plan.how not in hows:  # no cluster here: composed
            plan = Plan(composed_only(cmd.args), "slurm compose")
        t0, cpu0 = time.time(), children_cpu()
        out = subprocess.run([sys.executable, "run.py", *plan.argv], cwd=repo, env=user_env(repo),
                             capture_output=True, text=True, timeout=timeout)
        print(f"{time.time() - t0:6.1f} s ({children_cpu() - cpu0:5.1f} s CPU)  {plan.how:13s} {cmd.where}: "
              f"{' '.join(plan.argv)}", flush=True)
        if out.returncode != 0:
            failures.append(f"{cmd.where} ({plan.how}): python run.py {' '.join(plan.argv)}\n  exit "
                            f"{out.returncode}: {(out.stderr or out.stdout).strip()[-1500:]}")
    print(f"{time.time() - started:.0f} s in all ({children_cpu():.0f} s CPU of the commands)", flush=True)
    return failures


def typed(*args: str) -> DocCommand:
    return DocCommand("x.md:1", "python run.py " + " ".join(args), args)


def test_the_plan_reads_the_docs_as_a_user_would():
    cmd = typed("stage=pnoc", "backbone=resnest269", "trainer=ddp")
    assert plan_of(cmd).how == "compose" and plan_of(cmd).argv[-2:] == ["--cfg", "job"]
    assert plan_of(typed("experiment=synthetic")).argv == ["experiment=synthetic", "debug=tiny"]
    assert plan_of(typed("pipeline=wsss", "experiment=voc12_rs269")).how == "dry run"
    assert plan_of(typed("-m", "hydra/launcher=slurm", "stage=pnoc")).how == "slurm"
    on_gpus = plan_of(typed("-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "seed=0,1"))
    assert on_gpus.how == "slurm compose" and "seed=0" in on_gpus.argv and "-m" not in on_gpus.argv
    optuna = plan_of(typed("hparams_search=classifier_optuna", "hydra.sweeper.n_trials=20"))
    assert optuna.argv == ["hparams_search=classifier_optuna", "debug=tiny", OPTUNA_TRIALS]
    commands = fenced_commands(ROOT)
    assert commands and all(c.where.split(":")[0] != "conf" for c in commands)
    readme = [int(c.where.split(":")[1]) for c in commands if c.where.startswith("README.md:")]
    assert readme == sorted(readme)  # the order written


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_documented_commands_run_in_a_fresh_folder(tmp_path):
    from tests.slurm.test_local_cluster import _cluster_answer

    repo = fresh_copy(tmp_path / "wsss")
    hows = {"run", "compose", "dry run", "slurm compose"}
    if _cluster_answer() is None:
        hows.add("slurm")
    failures = run_all(repo, fenced_commands(repo), hows)
    assert not failures, "documented commands that fail as a user types them:\n" + "\n".join(failures)
