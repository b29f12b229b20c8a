"""The OmegaConf resolvers conf/ uses, registered once before Hydra composes anything (wsss/app.py).

- `${wsss.per_stage:${stage.name},{pnoc:0.1},0.0}`: a value that depends on the selected stage, for an
  experiment file that sets one key for several stages (the mapping's value for this stage, else the default).
- `${wsss.run_of:classifier}/cams`: another stage's run folder for this data set and backbone
  (`${wsss.run_of:ccam,sep2023,resnest269}`: with another run name and backbone);
- the folder resolvers of wsss/sweep_dirs.py (`wsss.cwd`, `wsss.sweep_id`, `wsss.job_dir`) and
  `run_folder` (wsss/run_paths.py: a run folder stays inside `paths.runs_dir`).
"""
from __future__ import annotations

from omegaconf import OmegaConf

from wsss import sweep_dirs
from wsss.run_paths import inside_runs_dir


def per_stage(stage: str, values, default):
    values = OmegaConf.to_container(values) if OmegaConf.is_config(values) else dict(values or {})
    value = values.get(str(stage), default)
    return OmegaConf.create(value) if isinstance(value, (list, dict)) else value  # a node, as OmegaConf needs


def run_folder(runs_dir, relative):
    return inside_runs_dir(runs_dir, relative)


def stage_run_folder(stage: str, run_name: str = "default", backbone: str | None = None, *, _root_) -> str:
    """`${wsss.run_of:<stage>[,<run_name>[,<backbone>]]}`: the run folder that `python run.py stage=<stage>`
    (with that run_name and backbone) has for this command's data set: another stage's outputs named without
    spelling out the run-folder layout (conf/hydra/default.yaml). The backbone is this command's unless named
    (a ResNet-50 saliency network reading the ResNeSt-269 C²AM-H run)."""
    backbone = backbone or _root_.backbone.name
    return f"{_root_.paths.runs_dir}/{stage}/{_root_.dataset.name}/{backbone}/{run_name}"


def register() -> None:
    if not OmegaConf.has_resolver("wsss.run_of"):
        OmegaConf.register_new_resolver("wsss.run_of", stage_run_folder)
    if not OmegaConf.has_resolver("wsss.per_stage"):
        OmegaConf.register_new_resolver("wsss.per_stage", per_stage)
    sweep_dirs.register()
    if not OmegaConf.has_resolver("run_folder"):
        OmegaConf.register_new_resolver("run_folder", run_folder)
