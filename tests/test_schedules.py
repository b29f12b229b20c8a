
import pytest

from wsss.schedules import linear_ramp


def test_linear_ramp_matches_puzzle_alpha_reference_values():
    # lucasdavid/PNOC@f250e0d:tools/ai/optim_utils.py linear_schedule: T=1000, alpha 0 -> 4 over the first
    # half.
    values = [linear_ramp(t, 1000, 0.0, 4.0, 0.5) for t in (0, 250, 499, 500, 999)]
    assert values == pytest.approx([0.0, 2.0, 3.992, 4.0, 4.0], rel=1e-12)


def test_linear_ramp_full_run_start_middle_end():
    # P-NOC lambda_cse: 0.3 -> 1.0 over the whole run.
    assert linear_ramp(0, 100, 0.3, 1.0) == pytest.approx(0.3)
    assert linear_ramp(50, 100, 0.3, 1.0) == pytest.approx(0.65)
    assert linear_ramp(100, 100, 0.3, 1.0) == pytest.approx(1.0)
    assert linear_ramp(150, 100, 0.3, 1.0) == pytest.approx(1.0)


def test_linear_ramp_decreasing_and_constant():
    assert linear_ramp(25, 100, 1.0, 0.0, 0.5) == pytest.approx(0.5)
    assert linear_ramp(80, 100, 1.0, 0.0, 0.5) == pytest.approx(0.0)
    assert linear_ramp(0, 100, 0.0, 4.0, fraction=0.0) == 4.0


@pytest.mark.parametrize("step,total,fraction", [(-1, 10, 1.0), (0, 0, 1.0), (0, 10, -0.5)])
def test_linear_ramp_rejects_bad_arguments(step, total, fraction):
    with pytest.raises(ValueError):
        linear_ramp(step, total, 0.0, 1.0, fraction)
