"""`make bench` still runs: every benchmark script of bench/run_all.py, at its smallest sizes, times both of
its sides and finds their outputs equal (each script raises when they differ). Benchmarks are not imported by
the package, so nothing else notices when a change breaks one."""

import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import run_all  # noqa: E402


def test_every_benchmark_has_a_smoke_size():
    assert set(run_all.SMOKE) == set(run_all.COMMANDS)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_every_benchmark_runs_at_its_smoke_size(capsys):
    assert run_all.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for command in run_all.COMMANDS:
        assert f"**`{command} {run_all.SMOKE[command]}`**" in out
    assert out.count("| what |") + out.count("| process |") >= len(run_all.COMMANDS) - 2, out
