"""How a run departs from the recipe it was started with: its resolved configuration against the one
`python run.py stage=<its stage> experiment=<its recipe>` composes, key by key.

Left out: what says how or where a run ran, not what it computed (paths, loggers, workers, progress bars, the
accelerator and device count, which splits are predicted or evaluated, the task list), and the wiring between
runs (a path on either side: the input folders and checkpoints, whose producers the report matches itself).
A replaced config group is named once (`backbone=resnet18`) rather than key by key.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from wsss.config_diff import MISSING

GROUPS = ("backbone", "dataset")   # a group whose `name` differs: one line, not one per key
HOW_IT_RAN = ("paths.", "logger.", "hydra.", "wandb.", "num_workers", "run_name", "tasks", "stage.tasks",
              "ckpt_path", "checkpoint_every_n_steps", "on_nonfinite_loss", "dataset.scan",
              "trainer.enable_progress_bar", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
              "trainer.strategy", "trainer.log_every_n_steps", "trainer.enable_model_summary",
              "trainer.process_group_backend", "stage.predict_splits", "stage.eval_splits",
              "dataset.predict_splits", "dataset.eval_splits", "stage.export.", "stage.classifier_run",
              "stage.figure.", "callbacks.progress_bar.")


def is_path(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or value.endswith((".ckpt", ".pth")))


def wiring(ours: Any, recipe: Any) -> bool:
    """A path on one side and a path or nothing on the other: which run's output is read, not a setting."""
    either = is_path(ours) or is_path(recipe)
    return either and all(v is None or v == MISSING or is_path(v) for v in (ours, recipe))


def ignored(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in HOW_IT_RAN)


def short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def departures(ours: dict, recipe: dict) -> list[str]:
    """`key: recipe → ours` for every setting of `ours` that differs from `recipe` (resolved configs)."""
    lines, replaced = [], []
    for group in GROUPS:
        mine, theirs = (ours.get(group) or {}).get("name"), (recipe.get(group) or {}).get("name")
        if mine != theirs:
            lines.append(f"{group}={mine} (recipe: {theirs})")
            replaced.append(group)
    return lines + changed({k: v for k, v in ours.items() if k not in replaced},
                           {k: v for k, v in recipe.items() if k not in replaced})


def changed(ours: Any, recipe: Any, prefix: str = "") -> list[str]:
    """The leaves that differ; a block set to a plain value (`crf: {...} → None`) is one line."""
    if isinstance(ours, dict) and isinstance(recipe, dict):
        return [line for key in dict.fromkeys([*recipe, *ours])
                for line in changed(ours.get(key, MISSING), recipe.get(key, MISSING),
                                    f"{prefix}.{key}" if prefix else str(key))]
    if ours == recipe or ignored(prefix) or wiring(ours, recipe):
        return []
    return [f"{prefix}: {short(recipe)} → {short(ours)}"]


def recipe_config(command: list[str]) -> dict:
    """The resolved configuration of `python run.py <command>` (`stage=<stage> experiment=<recipe>`); read
    only: a recipe shared by several runs (an xai run's classifier) is composed once."""
    return composed(tuple(command))


@lru_cache(maxsize=None)
def composed(command: tuple[str, ...]) -> dict:
    from wsss.compose import StepComposer
    from wsss.resolvers import register

    register()
    plain, _ = StepComposer()(list(command))
    return plain
