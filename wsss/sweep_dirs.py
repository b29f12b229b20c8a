"""Folder names of runs and sweeps: the resolvers conf/paths and conf/hydra use.

- `${wsss.cwd:}`: the folder run.py was started from. Unlike `${hydra:runtime.cwd}` it resolves in the
  launching process of a multirun too, where Hydra resolves `hydra.sweep.dir` before any job exists.
- `${wsss.sweep_id:${hydra.overrides.task}}`: 8 hex digits naming the sweep (a hash of the command's
  overrides): the same command is the same sweep (its jobs resume), another command gets another folder.
- `${wsss.job_dir:${hydra.sweep.dir},${hydra.job.num},${hydra.overrides.task}}`: a job's folder, its number
  first, then the values of the swept keys only (`0_lr=0.05,seed=1`), in characters any shell takes as
  written.

The first two are cached: Hydra copies the launching process's resolver cache into every job's config (local
and SLURM jobs alike), so a job sees the sweep's id and folder, not an id of its own overrides.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

from omegaconf import OmegaConf

UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")
MAX_NAME = 120


def cwd() -> str:
    return os.getcwd()


def sweep_id(command) -> str:
    overrides = [str(o) for o in (OmegaConf.to_container(command) if OmegaConf.is_config(command)
                                  else command)]
    return hashlib.sha1(json.dumps(overrides).encode()).hexdigest()[:8]


def job_dir(sweep_dir: str, num, overrides) -> str:
    """`<num>_<key>=<value>,...` over the keys swept by this sweep (its sweep.json), by their short names."""
    from pathlib import Path

    from wsss.sweep_record import SweepRecord, override_key, short_keys, short_value

    overrides = [str(o) for o in (OmegaConf.to_container(overrides) if OmegaConf.is_config(overrides)
                                  else overrides)]
    values = {override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}
    record = SweepRecord.load(Path(str(sweep_dir)))
    swept = [k for k in (record.swept if record else values) if k in values]
    names = short_keys(swept)
    label = ",".join(f"{names[k]}={short_value(values[k])}" for k in swept)
    name = UNSAFE.sub("-", f"{num}_{label}" if label else str(num))
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def register() -> None:
    for name, function, cached in (("wsss.cwd", cwd, True), ("wsss.sweep_id", sweep_id, True),
                                   ("wsss.job_dir", job_dir, False)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=cached)
