"""What the stage benchmarks share: interleaved timing, medians and their spread, parity checks, the config.

Every ratio is `ceiling time / our time` (1.0: ours costs what the ceiling costs), measured in one process
with the two sides interleaved (ours, ceiling, ours, ceiling, ... after a warm-up of each), so that a machine
shared with other jobs slows both alike. Times are CPU seconds of the process (`now`, one torch thread), which
other jobs inflate far less than wall time. The spread beside a ratio is the range of the per-repeat ratios.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Ratio:
    """Medians of interleaved repeats: seconds of ours, of the ceiling, and the per-repeat ratios."""

    ours: float
    ceiling: float
    ratios: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def row(self, name: str, goal: str) -> str:
        lo, hi = min(self.ratios), max(self.ratios)
        return (
            f"| {name} | {self.ours * 1e3:.1f} ms | {self.ceiling * 1e3:.1f} ms | **{self.ratio:.2f}** "
            f"({lo:.2f}–{hi:.2f}) | {goal} |"
        )


def quiet_torch(threads: int) -> None:
    """A fixed torch thread count (1 is steadier on a shared machine) and no log or warning lines in the tables."""
    torch.set_num_threads(threads)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")


def interleaved(
    ours: Callable[[], float], ceiling: Callable[[], float], repeats: int, warmup: int = 1
) -> Ratio:
    """Time `ours()` and `ceiling()` alternately; each returns the seconds of one unit of work (a step, an
    image) it measured itself, so set-up outside the timed part is not counted."""
    for _ in range(warmup):
        ours(), ceiling()
    a, b = [], []
    for _ in range(repeats):
        a.append(ours())
        b.append(ceiling())
    return Ratio(statistics.median(a), statistics.median(b), [y / x for x, y in zip(a, b)])


def now() -> float:
    """CPU seconds of this process, all its threads."""
    return time.process_time()


def max_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two dicts of tensors with the same keys and shapes (a
    state dict, a set of outputs); a key or shape that differs is a ValueError naming it."""
    if set(a) != set(b):
        raise ValueError(f"the two sides hold different keys: {sorted(set(a) ^ set(b))[:5]}")
    worst = 0.0
    for k in a:
        x, y = torch.as_tensor(a[k]), torch.as_tensor(b[k])
        if x.shape != y.shape:
            raise ValueError(f"{k}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        if x.numel():
            worst = max(worst, float((x.double() - y.double()).abs().max()))
    return worst


def check_equal(name: str, a: dict, b: dict, atol: float) -> float:
    """`max_difference(a, b)`, raising if it is above `atol`: a benchmark whose two sides do not compute the
    same thing measures nothing."""
    diff = max_difference(a, b)
    if not diff <= atol:
        raise AssertionError(f"{name}: ours and the ceiling differ by {diff:.3g} (> {atol:g})")
    return diff


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load {load:.1f}"
    )


def compose(overrides: list[str], run_dir: Path) -> dict:
    """The resolved config of `run.py <overrides>` as a plain dict, its run folder at `run_dir`."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from wsss.app import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose(
            config_name="config",
            overrides=[
                *overrides,
                f"paths.root={run_dir.parent}",
                f"paths.runs_dir={run_dir.parent}",
                f"paths.run_dir={run_dir}",
                f"paths.data_dir={run_dir.parent / 'data'}",
            ],
        )
    GlobalHydra.instance().clear()
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("hydra", None)
    return cfg
