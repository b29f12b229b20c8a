"""Mistakes a user makes on the command line or in the data, reported as one paragraph without a traceback.

- `typed_overrides(argv)`: Hydra's parsed overrides (the `+stage.` keys that wsss/app.py's config check refuses
  when the stage does not read them);
- `did_you_mean(argv)`: after Hydra refused a key that is not in the config, the nearest keys that are;
- `is_user_error(error)` / `report(error)`: weights not cached, a bad hyperparameter, a refused run folder, a
  missing data folder, a pipeline that cannot go on: the message on the screen, the traceback in the run
  folder's app.log only.
"""
from __future__ import annotations

import difflib
import logging
import sys
import traceback

log = logging.getLogger("wsss")


class UserError(Exception):
    """An error whose message says everything the user needs: shown without a traceback. The modules that
    find such mistakes (data scan, pipeline, weights, hyperparameters) raise subclasses of it."""


class HyperparameterError(UserError, ValueError):
    """A hyperparameter of a wrong type or range (wsss/hyperparameters.py)."""


class RunFolderConflict(UserError, RuntimeError):
    """A run folder holding a run of another configuration (wsss/tasks.py)."""


def typed_overrides(argv: list[str]) -> list:
    """Hydra's parsed overrides of `argv` (flags and their values dropped), or [] when they do not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with_value = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp",
                  "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}
    words, skip = [], False
    for word in argv:
        if skip or word in with_value:
            skip = not skip and word in with_value
            continue
        if not word.startswith("-"):
            words.append(word)
    try:
        return OverridesParser.create().parse_overrides(words)
    except Exception:  # Hydra reports a malformed override itself
        return []


def dotted_keys(node, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    out = [prefix] if prefix else []
    for key, value in node.items():
        out += dotted_keys(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def first_value(override) -> str:
    return list(override.sweep_string_iterator())[0] if override.is_sweep_override() else override.value()


def did_you_mean(argv: list[str], conf_dir: str) -> str | None:
    """For each typed key the composed config lacks (the groups as typed), the nearest keys it has."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = typed_overrides(argv)
    groups = [f"{o.key_or_group}={first_value(o)}" for o in overrides
              if "." not in o.key_or_group and not o.is_add() and not o.is_delete()]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose("config", overrides=groups)
        keys = dotted_keys(OmegaConf.to_container(cfg, resolve=False))
    except Exception:  # a bad group choice: Hydra's message already lists the options
        return None
    finally:
        GlobalHydra.instance().clear()
    lines = []
    for o in overrides:
        key = o.key_or_group
        if "." in key and not o.is_add() and not key.startswith("hydra.") and key not in keys:
            others = [k for k in keys if not key.startswith(k + ".")]  # not its own parents
            near = difflib.get_close_matches(key, others, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(near)}?" if near else "no key of the config is close to it."
            lines.append(f"{key} is not a key of this config: {hint} (+{key}=... adds a new key)")
    return "\n".join(lines) or None


def is_user_error(error: BaseException) -> bool:
    if isinstance(error, UserError):  # a bad hyperparameter, run folder, data set, pipeline step or weights
        return True
    return isinstance(error, FileNotFoundError) and str(error).startswith("dataset.")


def report(error: BaseException) -> None:
    """The message on stderr; the traceback into the log files only (the run folder's app.log)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (text,), None))
    sys.stderr.write(f"error: {error}\n")
