"""Numeric hyperparameters checked by key before a stage is built: `stage.lr=-0.1: expected a positive number`,
not a traceback from deep inside the optimiser or the data loader.

Keys under `stage` are checked wherever they sit (`stage.noc.lr_factor` too) by their name; a few keys
outside `stage` by their full path. A null value means "use the default" and is not checked.
"""
from __future__ import annotations

from numbers import Real
from typing import Callable, Iterator

from wsss.user_errors import HyperparameterError

Check = tuple[Callable[[object], bool], str]


def _number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and x == x  # NaN is not a hyperparameter


def _integer(x) -> bool:
    return _number(x) and float(x).is_integer()


POSITIVE: Check = (lambda x: _number(x) and x > 0, "a positive number")
NON_NEGATIVE: Check = (lambda x: _number(x) and x >= 0, "a number >= 0")
FRACTION: Check = (lambda x: _number(x) and 0 <= x < 1, "a number in [0, 1)")
POSITIVE_INT: Check = (lambda x: _integer(x) and x >= 1, "an integer >= 1")
NON_NEGATIVE_INT: Check = (lambda x: _integer(x) and x >= 0, "an integer >= 0")

#: rules for a key of `stage` (at any depth) by its name
BY_NAME: dict[str, Check] = {
    "lr": NON_NEGATIVE,  # lr 0 freezes the weights: a probe (test_stage_objectives)
    "lr_factor": POSITIVE, "lr_alpha_bias": NON_NEGATIVE, "lr_alpha_new": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE, "momentum": FRACTION, "poly_power": NON_NEGATIVE, "label_smoothing": FRACTION,
    "batch_size": POSITIVE_INT, "val_batch_size": POSITIVE_INT, "mask_batch_size": POSITIVE_INT,
    "max_epochs": POSITIVE_INT,
    "batch_scope": (lambda x: x in ("device", "global"), "'device' (per device) or 'global' (per step, all devices)"),
}
#: rules for keys outside `stage`, by path
BY_PATH: dict[str, Check] = {
    "num_workers": NON_NEGATIVE_INT, "checkpoint_every_n_steps": POSITIVE_INT,
    "dataset.crop_size": POSITIVE_INT, "dataset.min_size": POSITIVE_INT, "dataset.max_size": POSITIVE_INT,
    "trainer.accumulate_grad_batches": POSITIVE_INT,
}


def _leaves(tree: dict, prefix: str) -> Iterator[tuple[str, str, object]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", str(key), value


def _lookup(cfg: dict, path: str):
    node = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def hyperparameter_problems(cfg: dict) -> list[str]:
    """One line per bad value of the resolved config (a plain dict), naming its key."""
    found = [(path, value, BY_NAME[name]) for path, name, value in _leaves(cfg.get("stage") or {}, "stage.")
             if name in BY_NAME]
    found += [(path, _lookup(cfg, path), check) for path, check in BY_PATH.items()]
    problems = [f"{path}={value!r}: expected {what}" for path, value, (ok, what) in found
                if value is not None and not ok(value)]
    lo, hi = _lookup(cfg, "dataset.min_size"), _lookup(cfg, "dataset.max_size")
    if _number(lo) and _number(hi) and lo > hi:
        problems.append(f"dataset.min_size={lo} > dataset.max_size={hi}: the random rescale needs min <= max")
    return problems


def check_hyperparameters(cfg: dict) -> None:
    problems = hyperparameter_problems(cfg)
    if problems:
        raise HyperparameterError("; ".join(problems))

