"""The schema of a stage's config, checked when the command is composed, before torch is imported.

A stage's schema is its own conf/stage/<name>.yaml (with the stage files its defaults list names): the keys
it has are the keys the stage reads, the type of each default is the type a value must have, so every default
is written once, in that file. A key whose default is null takes the type named in `NULL_DEFAULTS`; a key
whose default is not null may be set to null only when it is listed in `NULLABLE`.

The composed `stage` node is refused, one paragraph naming each key and what was expected, when
- a value has another type than its default (`stage.lr=abc`, `stage.inference.flip=3`) or is out of range
  (wsss/hyperparameters.py: `stage.lr=-1`);
- a key added on the command line with `+stage.<key>` is not a key of the selected stage (`+stage.lrr=0.5`),
  with the nearest keys it has;
- a key set in a config file is a key of no stage at all (a typo in a recipe). Shared recipes (debug=tiny,
  experiment=synthetic) set keys for several stages at once: a key of another stage is left alone.
"""
from __future__ import annotations

import difflib
from functools import cache
from numbers import Real
from pathlib import Path

import yaml

CONF_STAGE = Path(__file__).resolve().parents[1] / "conf" / "stage"

#: the type of each key whose default is null, by its path inside `stage`
NULL_DEFAULTS: dict[str, type] = {
    "checkpoint": str, "backbone_checkpoint": str, "train_split": str, "max_steps": int, "crop_size": int,
    "level_channels": list, "max_images": int, "kur": dict, "predict_splits": list, "eval_splits": list,
    "inputs.saliency": str, "affinity_labels.splits": list, "hints.delta_bg": float, "pseudo.processes": int,
    "evaluation.thresholds": list, "evaluation.rw_thresholds": list, "evaluation.crf": dict,
    "evaluation.cams": str, "inference.crf": dict, "inference.double_small_side": int,
    "method_options.scorecam.max_channels": int, "export.archive": str,
}
#: keys the task runner reads for every stage (wsss/tasks.py: which splits a predict writes and an evaluation
#: scores), optional in each conf/stage file: without them, the data set's
RUNNER_KEYS = ("predict_splits", "eval_splits")
#: keys with a default that may also be set to null (what null means is in the stage's yaml)
NULLABLE = {"crop_size", "inference.pad_to", "inputs.cams", "masks", "split", "oc_checkpoint"}

TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
              dict: "a mapping"}


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _composed(path: Path) -> dict:
    """A config file merged over the files its defaults list names (`name` beside it, `/group/name@_here_`
    from conf/), as Hydra composes it into the same package."""
    with open(path) as f:
        own = yaml.safe_load(f) or {}
    entries = [str(e).removesuffix("@_here_") for e in own.pop("defaults", None) or []]
    merged: dict = {}
    for entry in entries if "_self_" in entries else [*entries, "_self_"]:  # Hydra: _self_ last if unnamed
        if entry == "_self_":
            merged = _merge(merged, own)
        else:
            base = CONF_STAGE.parent if entry.startswith("/") else path.parent
            merged = _merge(merged, _composed(base / f"{entry.lstrip('/')}.yaml"))
    return merged


@cache
def stage_defaults(name: str) -> dict:
    """conf/stage/<name>.yaml with the files its defaults list names, as Hydra composes it."""
    return _composed(CONF_STAGE / f"{name}.yaml")


def stage_names() -> list[str]:
    return sorted(p.stem for p in CONF_STAGE.glob("*.yaml"))


def _paths(tree: dict, prefix: str = "") -> dict[str, object]:
    """{dotted path: value} of every key, mappings and their children."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out[path] = value
        if isinstance(value, dict) and value:
            out.update(_paths(value, path + "."))
    return out


@cache
def stage_keys(name: str) -> dict[str, object]:
    return _paths(stage_defaults(name))


@cache
def every_stage_key() -> frozenset[str]:
    return frozenset(k for name in stage_names() for k in stage_keys(name))


def expected_type(path: str, default) -> type | None:
    if default is None:
        return NULL_DEFAULTS.get(path)
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return float if path.rsplit(".", 1)[-1] in FLOAT_KEYS else int
    return next((t for t in (float, str, list, dict) if isinstance(default, t)), None)


#: keys whose default happens to be written as an integer but which take any number
FLOAT_KEYS = {"beta", "alpha", "lambda_h", "a_pos", "a_neg", "a_bg", "t"}


def _fits(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, Real) and not isinstance(value, bool)
    return isinstance(value, kind)


def _show(value) -> str:
    """A value as it is typed in a config."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_show, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _step_budget(path: str, stage: dict) -> bool:
    """`max_epochs: null` is the epoch count derived from `max_steps` optimiser steps (wsss/tasks.py)."""
    return path == "max_epochs" and stage.get("max_steps") is not None


def type_problems(name: str, stage: dict) -> list[str]:
    """Values of `stage` (resolved) whose type is not their default's."""
    known = stage_keys(name)
    problems = []
    for path, value in _paths(stage).items():
        if path not in known:
            continue
        default = known[path]
        kind = expected_type(path, default)
        if value is None:
            nullable = path in NULLABLE or _step_budget(path, stage)
            if default is not None and not nullable:
                problems.append(f"stage.{path}=null: expected {TYPE_WORDS[kind]} (conf/stage/{name}.yaml: "
                                f"{_show(default)}; null is not one of its values)")
            continue
        if kind is not None and not _fits(value, kind):
            problems.append(f"stage.{path}={_show(value)}: expected {TYPE_WORDS[kind]} "
                            f"(conf/stage/{name}.yaml: {path.rsplit('.', 1)[-1]}: {_show(default)})")
        elif kind is list and isinstance(default, list) and default and isinstance(value, list):
            item = expected_type(path, default[0])
            bad = [v for v in value if item is not None and not _fits(v, item)]
            if bad:
                problems.append(f"stage.{path}={_show(value)}: expected a list whose items are each {TYPE_WORDS[item]}, "
                                f"like {_show(default)} (conf/stage/{name}.yaml)")
    return problems


def _near(path: str, keys) -> str:
    near = difflib.get_close_matches(path, sorted(keys), n=3, cutoff=0.6)
    return f"did you mean {' or '.join('stage.' + k for k in near)}?" if near else "no key of it is close."


def accepts(name: str, path: str) -> bool:
    """Whether stage `name` reads `path` (a dotted key inside `stage`): one of its keys, or an option inside
    one of its free mappings (`inference.crf.t`, `evaluation.thresholds` of DeepLab's `evaluation: {}`)."""
    known = stage_keys(name)
    free = {k for k, v in known.items() if v == {} or (v is None and NULL_DEFAULTS.get(k) is dict)}
    return path in known or path in RUNNER_KEYS or any(path.startswith(f + ".") for f in free)


def unknown_key_problems(name: str, stage: dict, added: list[str]) -> list[str]:
    """Keys of `stage` its schema lacks: refused when added on the command line (`added`, paths inside
    `stage`) or when no stage has them; a key of another stage (a shared recipe's) is left alone."""
    known, anywhere = stage_keys(name), every_stage_key()
    unread = [p for p in _paths(stage) if not accepts(name, p) and p.rpartition(".")[0] in ("", *known)]
    problems = [f"+stage.{path} on the command line: stage {name} does not read {path} "
                f"(conf/stage/{name}.yaml); {_near(path, known)}" for path in added if path in unread]
    return problems + [f"stage.{path} is a key of no stage (stage {name}: {_near(path, known)})"
                       for path in unread if path not in added and path not in anywhere]


def config_problems(cfg: dict, added: list[str] = ()) -> list[str]:
    """Every problem of the resolved config `cfg` (a plain dict): its stage against the stage's schema, then
    the ranges of wsss/hyperparameters.py. `added`: the paths inside `stage` added with `+` on the command line."""
    from wsss.hyperparameters import hyperparameter_problems

    stage, name = cfg.get("stage") or {}, str((cfg.get("stage") or {}).get("name"))
    problems = []
    if (CONF_STAGE / f"{name}.yaml").is_file():  # a stage defined elsewhere (tests) has no schema here
        problems = unknown_key_problems(name, stage, list(added)) + type_problems(name, stage)
    return problems or hyperparameter_problems(cfg)


def composed_config_problems(cfg, added: list[str] = ()) -> list[str]:
    """config_problems of a composed DictConfig, resolving only the parts checked (the run folder's
    resolver is not needed)."""
    from omegaconf import OmegaConf

    checked = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
               for key in ("stage", "dataset", "trainer", "num_workers", "checkpoint_every_n_steps") if key in cfg}
    return config_problems(checked, added)


class Settings(dict):
    """A stage's resolved settings read as attributes (`s.lr`, `s.inference.scales`), still a plain dict (saved
    and pickled as one). A key its yaml lacks is an AttributeError naming it: a stage reads its defaults from
    conf/stage, never from a second default written in the code."""

    def __init__(self, tree: dict, path: str = "stage"):
        super().__init__({k: Settings(v, f"{path}.{k}") if isinstance(v, dict) else v for k, v in tree.items()})
        self.__dict__["path"] = path

    def __getattr__(self, key: str):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"{self.__dict__['path']}.{key} is not set: a key the stage reads belongs in "
                                 f"its conf/stage/<stage>.yaml") from None

    def __setattr__(self, key: str, value) -> None:
        raise AttributeError(f"{self.__dict__['path']} is read-only (set {key} in the config)")

    def __reduce__(self):
        return Settings, (dict(self), self.__dict__["path"])


def stage_settings(name: str, overrides: dict | None = None) -> Settings:
    """The settings of stage `name` as its conf/stage file gives them, `overrides` merged on top (tests)."""
    return Settings(_merge(stage_defaults(name), overrides or {}))
