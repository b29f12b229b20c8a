"""Run folders stay inside `paths.runs_dir`.

The run folder is built from config keys
(`<runs_dir>/<stage.name>/<dataset.name>/<backbone.name>/<run_name>`);
`run_name=../../elsewhere` or an absolute name would put it, its `.hydra/`, `app.log` and checkpoints outside
the runs folder. The Hydra resolver `run_folder` (conf/hydra/default.yaml) builds that path, normalised, and
refuses one that leaves `runs_dir`, naming the keys, before Hydra creates or writes anything there.
"""
from __future__ import annotations

import os
from pathlib import Path


KEYS = "stage.name, dataset.name, backbone.name and run_name"


def inside_runs_dir(runs_dir: str | Path, relative: str, keys: str = KEYS) -> str:
    """`runs_dir/relative`, normalised; ValueError when it is not inside `runs_dir`."""
    root = os.path.normpath(os.path.abspath(str(runs_dir)))
    path = os.path.normpath(os.path.join(root, str(relative)))
    if os.path.isabs(str(relative)) or os.path.commonpath([root, path]) != root or path == root:
        raise ValueError(f"the run folder {relative!r} (made of {keys}) resolves to {path}, outside "
                         f"paths.runs_dir={root}: each of those names must be a plain name or relative path "
                         "without '..' (e.g. run_name=my_run or run_name=sweeps/lr0.1)")
    return path

