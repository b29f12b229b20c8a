"""Hydra entry point: compose conf/, run the stage's tasks, print and save its metrics."""
from __future__ import annotations

import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from wsss.resolvers import register as register_resolvers

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register_resolvers()


log = logging.getLogger("wsss")


def _quiet() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*GPU available but not used.*",
                    ".*The number of training batches.*", ".*predict_dataloader.*workers.*",
                    ".*sync_dist=True.*", ".*is_global_zero.*", ".*Checkpoint directory .* exists.*",
                    ".*The `srun` command is available.*", ".*NumPy array is not writable.*",
                    ".*predict returned None.*", ".*Experiment logs directory.*exists and is not empty.*",
                    # by design: frozen parts (OC-CSE's oc, PoolNet's and AffinityNet's backbone BatchNorms)
                    # are built in eval mode; stages without validation share the data module's val loader
                    ".*module\\(s\\) in eval mode at the start of training.*",
                    ".*no `validation_step`. Skipping val loop.*"):
        warnings.filterwarnings("ignore", message=pattern)


# Stages that print their own table of these metrics (wsss/xai/report.py): not printed a second time.
OWN_TABLES = {"xai": "xai/"}


def metric_cell(name: str, value: float | int) -> str:
    """One unit on screen: rates (mIoU, mAP, F-scores, ...) in percent, other floats as they are."""
    from wsss.sweep_summary import is_rate

    if isinstance(value, float):
        return f"{100 * value:.2f} %" if is_rate(name) else f"{value:.4f}"
    return str(value)


def print_metrics(metrics: dict, title: str, stage: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    own = OWN_TABLES.get(stage)
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not (own and k.startswith(own)):
            table.add_row(k, metric_cell(k, v))
    Console().print(table)


def print_run_folder(path) -> None:
    """The last line of every run: where its files are, quoted for the shell."""
    print(f"run folder: {shlex.quote(str(path))}", flush=True)


def local_ddp_sweep_error(trainer: dict, multirun: bool, launcher: str) -> str | None:
    """Why this trainer cannot run in this multirun, or None. Lightning's DDP re-executes the command line,
    which under a local multirun starts the whole sweep again in every rank."""
    strategy = str(trainer.get("strategy", "auto"))
    relaunches = strategy == "ddp" or strategy.startswith("ddp_find_unused")
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    several = str(devices) not in ("1", "[0]") or str(nodes) != "1"
    if not (multirun and relaunches and several) or launcher.endswith("SlurmLauncher"):
        return None
    return (f"trainer.strategy={strategy} with devices={devices} (num_nodes={nodes}) in a multirun on the "
            f"{launcher.rsplit('.', 1)[-1] or 'local'} launcher: Lightning would start the whole sweep again in "
            "every rank. Sweep DDP runs through SLURM (hydra/launcher=slurm, or hydra/launcher=slurm_local on the "
            "local cluster), run the members one at a time without -m, or use trainer.strategy=ddp_spawn to "
            "simulate DDP on CPU.")


def multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def check_launch(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    launcher = str(OmegaConf.select(HydraConfig.get(), "launcher._target_", default="") or "")
    error = local_ddp_sweep_error(dict(cfg.get("trainer") or {}), multirun(), launcher)
    if error:
        raise RuntimeError(error)


def warn_contradicted_dataset() -> None:
    """A `dataset=` typed against the experiment's data set: the recipe values it keeps, as a warning."""
    from hydra.core.hydra_config import HydraConfig

    from wsss.recipe_check import contradicted_dataset

    hc = HydraConfig.get()
    message = contradicted_dataset(hc.runtime.choices.get("experiment"), hc.runtime.choices.get("dataset"),
                                   list(hc.overrides.task), Path(CONF_DIR))
    if message:
        logging.getLogger("wsss").warning(message)


def main() -> None:
    """run.py: Hydra composes the config, checked against its stage's schema before anything heavy is imported
    (check_config); a key the config lacks gets the nearest keys it has."""
    from wsss.user_errors import did_you_mean

    try:
        hydra_main()
    except SystemExit as stop:
        if stop.code not in (0, None) and not REPORTED:
            hint = did_you_mean(sys.argv[1:], CONF_DIR)
            if hint:
                sys.stderr.write(hint + "\n")
        raise


REPORTED: list[BaseException] = []  # user errors already shown as one paragraph


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    try:
        return run_command(cfg)
    except Exception as error:
        from wsss.user_errors import is_user_error, report

        if not is_user_error(error):
            raise
        report(error)
        if multirun():
            raise  # the sweep records it in the job's error.txt and goes on
        REPORTED.append(error)
        raise SystemExit(1) from None


def trainer_debugging(trainer: dict) -> bool:
    """Lightning's debugging switches: a run with them is run, never taken as the finished full run."""
    limits = [v for k, v in trainer.items() if k.startswith("limit_") and k.endswith("_batches")]
    return bool(trainer.get("fast_dev_run")) or any(v is not None and v != 1.0 for v in limits)


def recorded_if_finished(plain: dict, run_dir: Path) -> dict | None:
    """The recorded metrics of a run folder that holds a finished run of this very resolved configuration
    (the pipeline's rule for an up-to-date step, wsss/finished_run.py), else None: the run goes ahead. Only a
    run that would resume (`ckpt_path=last`), without Lightning's debugging switches, is answered so."""
    import json

    from wsss.finished_run import why_not_finished

    if plain.get("ckpt_path") != "last" or trainer_debugging(dict(plain.get("trainer") or {})):
        return None
    if why_not_finished(run_dir, plain) is not None:
        return None
    log.info("up to date: %s holds a finished run of this configuration; its recorded metrics follow (delete "
             "its metrics.json to run its tasks again)", run_dir)
    return json.loads((run_dir / "metrics.json").read_text())


def check_config(cfg: DictConfig) -> None:
    """The composed config against its stage's schema (wsss/stage_schema.py), before torch is imported: one
    paragraph naming each key of a wrong type, out of range, or added with `+stage.` but read by no stage."""
    from hydra.core.hydra_config import HydraConfig

    from wsss.stage_schema import composed_config_problems
    from wsss.user_errors import HyperparameterError, typed_overrides

    added = [o.key_or_group.removeprefix("stage.") for o in typed_overrides(list(HydraConfig.get().overrides.task))
             if o.is_add() and o.key_or_group.startswith("stage.")]
    problems = composed_config_problems(cfg, [] if cfg.get("pipeline") else added)  # pipeline steps: their own
    if problems:
        raise HyperparameterError("; ".join(problems))


def run_command(cfg: DictConfig) -> float | None:
    _quiet()
    check_config(cfg)
    from wsss.logging_utils import finish_wandb
    from wsss.sweep import objective_value

    warn_contradicted_dataset()
    try:
        if cfg.get("fetch_weights"):  # on a login node: the ImageNet weights of this command, nothing else
            from wsss.fetch_weights import fetch_for_config

            fetch_for_config(cfg)
            return None
        if cfg.get("pipeline"):
            from hydra.core.hydra_config import HydraConfig

            from wsss.pipeline import run_pipeline

            metrics = run_pipeline(cfg)
            print_run_folder(HydraConfig.get().runtime.output_dir)  # summary.md, metrics.json, dry_run.json
            return objective_value(cfg.get("objective"), metrics)
        check_launch(cfg)
        metrics = None if multirun() else recorded_if_finished(OmegaConf.to_container(cfg, resolve=True),
                                                                Path(cfg.paths.run_dir))
        if metrics is None:
            from wsss.tasks import run

            metrics = run(cfg)
    finally:
        finish_wandb()  # a multirun's next job must not log into this job's W&B run
    rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", 0)) or 0)
    if rank != 0:
        return None  # a sweeper reads rank 0's value (SLURM DDP jobs run main() in every rank)
    print_metrics(metrics, f"{cfg.stage.name} · {cfg.dataset.name} · {cfg.backbone.name} · {cfg.run_name}",
                  cfg.stage.name)
    print_run_folder(cfg.paths.run_dir)
    return objective_value(cfg.get("objective"), metrics)


if __name__ == "__main__":
    main()
