"""Step-indexed loss-weight ramps (the poly learning-rate decay is `wsss.optim.poly_factor`).

Step convention: ``step`` is the 0-based index of the training step being taken, i.e.
the number of steps completed before it. ``total`` is the number of steps of the whole run.
For loss-weight ramps the reference counts *micro-batches* (``step`` = micro-batch index, ``total`` =
epochs x batches per epoch); for the learning rate it counts *optimiser* steps (``total`` =
micro-batches // accumulation). The caller picks the counter; these functions only map it.
"""

from __future__ import annotations


def _check_step_total(step: int, total: int) -> None:
    if total <= 0:
        raise ValueError(f"total must be a positive number of steps, got {total}")
    if step < 0:
        raise ValueError(f"step must be >= 0 (0-based step index), got {step}")


def linear_ramp(step: int, total: int, start: float, end: float, fraction: float = 1.0) -> float:
    """Value ramping linearly from ``start`` to ``end`` over the first ``fraction * total`` steps, then held.

    ``v(t) = start + (end - start) * min(1, t / (fraction * total))``; ``fraction == 0`` means the constant
    ``end`` (no ramp). Matches the reference ``linear_schedule``
    (lucasdavid/PNOC@f250e0d:tools/ai/optim_utils.py; Puzzle-CAM's alpha, total=1000, 0 -> 4 over 0.5 gives
    v(0)=0, v(250)=2, v(499)=3.992, v(500)=4), except that decreasing ramps (``end < start``) also work: the
    reference's ``min(end, ...)`` would jump to ``end`` immediately.

    Used for the Puzzle reconstruction weight alpha_p (0 -> 4 over 0.5), the OC-CSE weight lambda_cse
    (0.3 -> 1 over 1.0) and the P-NOC weight lambda_noc (0 -> 1 over 1.0) of thesis Eq. 26-28.
    """
    _check_step_total(step, total)
    if fraction < 0:
        raise ValueError(f"fraction must be >= 0 (share of the run spent ramping), got {fraction}")
    if fraction == 0:
        return float(end)
    progress = min(1.0, step / (fraction * total))
    return float(start + (end - start) * progress)
