"""What a run and its artifact folders are: the keys that change no result, and the hashes built without them.

- `RUN_KEYS`: top-level keys that say how a run runs (trainer, logger, callbacks, paths, ...), not what it computes: a
  run may resume with other values, and the pipeline compares finished runs without them (`comparable`;
  `tasks` aside there, which says what a run produced);
- `not_output_keys(plain)`: the stage keys that change no artifact: `COMMON_NOT_OUTPUT_KEYS` (evaluation,
  schedules whose effect the checkpoint carries, which splits run) and the ones the stage class declares in
  its own file (`Stage.not_output_keys`: the options of later tasks that have their own identity);
- `training_identity(plain)`: the hash a resumed fit must share with the run it resumes (neither the
  not-output keys nor `inference` change the weights);
- `producer_identity(plain, weights)`: what a predicted artifact folder depends on (the weights, the settings
  that change the output, the input folders read), written in its manifest and checked by the pipeline.
"""
from __future__ import annotations

from pathlib import Path

from wsss.artifacts import checkpoint_identity, config_hash, folder_identity

RUN_KEYS = ("trainer", "logger", "callbacks", "paths", "num_workers", "tasks", "ckpt_path",
            "on_nonfinite_loss", "checkpoint_every_n_steps")
COMMON_NOT_OUTPUT_KEYS = ("tasks", "evaluation", "max_epochs", "checkpoint", "predict_splits", "eval_splits")
OUTPUT_DATASET_KEYS = ("name", "_target_", "args")       # the data set keys a predicted artifact depends on
NOT_TRAINING_DATASET_KEYS = ("scan", "predict_splits", "eval_splits")


def stage_class(plain: dict):
    """The class `stage._target_` names, or None (a hand-written config without one)."""
    from hydra.utils import get_class

    target = (plain.get("stage") or {}).get("_target_")
    return get_class(target) if target else None


def not_output_keys(plain: dict) -> tuple[str, ...]:
    """The stage keys of `plain` that change no artifact of its stage."""
    cls = stage_class(plain)
    return COMMON_NOT_OUTPUT_KEYS + tuple(getattr(cls, "not_output_keys", ()))


def training_fields(plain: dict) -> dict:
    """The part of a resolved config that a resumed training run must share with the run it resumes."""
    ident = {k: v for k, v in plain.items() if k not in RUN_KEYS}
    # extending a schedule or changing how results are produced resumes the same training run
    dropped = set(not_output_keys(plain)) | {"inference"}
    ident["stage"] = {k: v for k, v in (ident.get("stage") or {}).items() if k not in dropped}
    dataset = ident.get("dataset") or {}
    ident["dataset"] = {k: v for k, v in dataset.items() if k not in NOT_TRAINING_DATASET_KEYS}
    return ident


def training_identity(plain: dict) -> str:
    return config_hash(training_fields(plain))


def output_settings(plain: dict) -> str:
    """Hash of the settings that change what a predict writes, besides the weights and the input folders."""
    dropped = set(not_output_keys(plain))
    stage = {k: v for k, v in plain["stage"].items() if k not in dropped}
    dataset = {k: plain["dataset"].get(k) for k in OUTPUT_DATASET_KEYS}
    return config_hash({"stage": stage, "dataset": dataset, "backbone": plain.get("backbone")})


def input_folders(plain: dict) -> list[str]:
    """The artifact folders a stage reads (`stage.inputs.*`, `stage.masks`), as configured."""
    s = plain["stage"]
    paths = [v for k, v in (s.get("inputs") or {}).items() if isinstance(v, str) and k != "producers"]
    if isinstance(s.get("masks"), str) and s["masks"] != "gt":
        paths.append(s["masks"])
    return paths


def producer_identity(plain: dict, weights: str | Path | None) -> dict:
    """What a predicted artifact folder depends on: weights, output settings, input folders."""
    return {"checkpoint": checkpoint_identity(weights), "settings": output_settings(plain),
            "inputs": {p: folder_identity(p) for p in input_folders(plain)}}


def derived_identity(settings_hash: str, inputs: list[str | Path]) -> dict:
    """The producer of a folder computed from other folders without weights (pseudo masks, pseudo saliency,
    affinity labels): the hash of its settings and the identity of every input folder it read."""
    return {"settings": settings_hash, "inputs": {str(p): folder_identity(p) for p in inputs}}


def comparable(plain: dict) -> dict:
    """What the pipeline compares between a finished run's config and the one it would run now."""
    return {k: v for k, v in plain.items() if (k not in RUN_KEYS or k == "tasks") and k != "hydra"}
