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


def wandb_logger(save_dir: str, project: str, name: str, group: str | None = None, tags: list | None = None,
                 mode: str = "auto", entity: str | None = None, run_id: str | None = None, log_model: bool = False):
    """`mode`: online, offline or auto (online only with credentials and WANDB_MODE not offline)."""
    from pytorch_lightning.loggers import WandbLogger

    env_mode = os.environ.get("WANDB_MODE", "")
    if mode == "auto":
        mode = "online" if _has_wandb_credentials() and env_mode not in ("offline", "disabled", "dryrun") else "offline"
    if mode == "offline":
        log.info("W&B runs offline in %s; upload later with `wandb sync %s/wandb/offline-run-*`", save_dir, save_dir)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    import wandb

    settings = wandb.Settings(init_timeout=60, silent=True, x_disable_stats=True)
    return WandbLogger(save_dir=save_dir, project=project, name=name, group=group, tags=list(tags or []),
                       offline=mode == "offline", entity=entity, id=run_id, resume="allow",
                       log_model=False if mode == "offline" else log_model, settings=settings)
