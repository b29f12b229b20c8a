"""Hydra entry point: compose conf/, run the stage's tasks, print and save its metrics."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
log = logging.getLogger("wsss")


def _quiet() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*GPU available but not used.*",
                    ".*The number of training batches.*", ".*predict_dataloader.*workers.*",
                    ".*sync_dist=True.*", ".*is_global_zero.*", ".*Checkpoint directory .* exists.*"):
        warnings.filterwarnings("ignore", message=pattern)


def print_metrics(metrics: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
        elif isinstance(v, int):
            table.add_row(k, str(v))
    Console().print(table)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    _quiet()
    from wsss.tasks import run

    metrics = run(cfg)
    rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", 0)) or 0)
    if rank == 0:
        print_metrics(metrics, f"{cfg.stage.name} · {cfg.dataset.name} · {cfg.backbone.name} · {cfg.run_name}")
    objective = cfg.get("objective")
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    main()
