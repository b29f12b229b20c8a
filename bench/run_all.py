"""`make bench`: run the stage benchmarks at their small default sizes and write their tables into
docs/benchmarks.md (between the `bench:begin` / `bench:end` markers), each under its command, date, machine
and the load at the time.

    python bench/run_all.py              # all, then docs/benchmarks.md rewritten between the markers
    python bench/run_all.py --no-write   # print only
    python bench/run_all.py --smoke      # every script at its smallest sizes, print only: do they all still run?
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
COMMANDS = (
    "python bench/bench_train_step.py",
    "python bench/bench_predict.py",
    "python bench/bench_predict_saliency.py",
    "python bench/bench_predict_deeplab.py",
    "python bench/bench_evaluate.py",
    "python bench/bench_affinity_labels.py",
    "python bench/bench_data.py",
    "python bench/bench_memory.py",
    "python bench/bench_crf.py",
)

#: what `--smoke` appends to each command: the smallest sizes at which it still times both sides and checks
#: that they agree (tests/bench/test_run_all.py runs them all)
SMOKE = {
    "python bench/bench_train_step.py": "--size 64 --batch 2 --steps 2 --repeats 1",
    "python bench/bench_predict.py": "--height 32 --width 48 --images 1 --repeats 1",
    "python bench/bench_predict_saliency.py": "--height 32 --width 48 --images 1 --repeats 1",
    "python bench/bench_predict_deeplab.py": "--height 32 --width 48 --images 1 --repeats 1",
    "python bench/bench_evaluate.py": "--images 4 --repeats 1 --workers 1",
    "python bench/bench_affinity_labels.py": "--images 1 --repeats 1",
    "python bench/bench_data.py": "--recipes voc12_rs269 --images 4",
    "python bench/bench_memory.py": "--recipes voc12_rs269 --skip-stages",
    "python bench/bench_crf.py": "--images 2 --size 64 --iterations 1 --processes 1",
}


def run(command: str) -> str:
    """The command's output tables, under a heading with its date, machine and load before and after."""
    before = os.getloadavg()[0]
    start = datetime.datetime.now(datetime.timezone.utc)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    program, *args = command.split()
    if program == "python":  # the interpreter running this script (its venv), whatever `python` is on PATH
        program = sys.executable
    out = subprocess.run([program, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{command} failed:\n{out.stderr[-3000:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("|", "#", "  "))]
    head = (
        f"**`{command}`** — {start:%Y-%m-%d %H:%M} UTC, {platform.machine()} with {os.cpu_count()} CPUs, "
        f"load {before:.1f} → {os.getloadavg()[0]:.1f}, "
        f"{(datetime.datetime.now(datetime.timezone.utc) - start).total_seconds():.0f} s"
    )
    body = [ln.lstrip("# ") if ln.startswith("#") else ln for ln in lines]
    return "\n".join([head, "", *body, ""])


def write(section: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n{section}\n{END}{rest.split(END, 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--smoke", action="store_true", help="smallest sizes (SMOKE); implies --no-write")
    args = p.parse_args(argv)
    parts = []
    for command in COMMANDS:
        if args.smoke:
            command = f"{command} {SMOKE[command]}"
        print(f"== {command}", flush=True)
        parts.append(run(command))
        print(parts[-1], flush=True)
    if not (args.no_write or args.smoke):
        write("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
