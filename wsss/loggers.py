"""Logger factories that never block a run: W&B falls back to offline mode without credentials."""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def flat_config(params: dict, parent: str = "") -> dict:
    """{"cfg": {"stage": {"lr": 0.1}}} -> {"stage.lr": 0.1}: dotted keys the W&B dashboard groups and plots by
    (lists stay values)."""
    out = {}
    for key, value in params.items():
        name = f"{parent}.{key}" if parent else ("" if key == "cfg" else str(key))
        if isinstance(value, dict):
            out.update(flat_config(value, name))
        else:
            out[name] = value
    return out


def flat_wandb_logger_class():
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.utilities import rank_zero_only

    class FlatConfigWandbLogger(WandbLogger):
        """Sends the run's config as flat dotted keys (`stage.lr`), not one nested `cfg` entry."""

        @rank_zero_only
        def log_hyperparams(self, params) -> None:
            params = params if isinstance(params, dict) else vars(params)
            super().log_hyperparams(flat_config(dict(params)))

    return FlatConfigWandbLogger


def wandb_logger(save_dir: str, project: str, name: str, group: str | None = None, tags: list | None = None,
                 mode: str = "auto", entity: str | None = None, run_id: str | None = None, log_model: bool = False,
                 job_type: str | None = None, stage: str | None = None, sweep_naming: bool = True):
    """`mode`: online, offline or auto (online only with credentials and WANDB_MODE not offline).

    With `sweep_naming`, a job of a multirun is named `<stage> <swept key>=<value> ...` and grouped by its sweep
    (wsss/sweep.py) instead of `name` and `group`."""
    from wsss.sweep import job_naming

    env_mode = os.environ.get("WANDB_MODE", "")
    if mode == "auto":
        mode = "online" if _has_wandb_credentials() and env_mode not in ("offline", "disabled", "dryrun") else "offline"
    if mode == "offline":
        log.info("W&B runs offline in %s; upload later with `wandb sync %s/wandb/offline-run-*`", save_dir, save_dir)
    naming = job_naming(stage or job_type or name) if sweep_naming else None
    if naming:
        name, group = naming
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    import wandb

    if run_id is None:  # one W&B run per run folder: a resume or requeue continues it
        from wsss.reliability.history import wandb_run_id

        run_id = wandb_run_id(save_dir)
    settings = wandb.Settings(init_timeout=60, silent=True, x_disable_stats=True)
    return flat_wandb_logger_class()(
        save_dir=save_dir, project=project, name=name, group=group, tags=list(tags or []), job_type=job_type,
        offline=mode == "offline", entity=entity, id=run_id, resume="allow",
        log_model=False if mode == "offline" else log_model, settings=settings)
