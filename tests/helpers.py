"""Compose the project's Hydra config in-process, as run.py would, for tests."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from wsss.app import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]

# A small, fast setting: ResNet-18 from scratch on 64-px synthetic shapes, one epoch, no workers.
TINY = [
    "experiment=synthetic",
    "experiment_stage=none",   # its general settings only: a test gives a stage the inputs it needs
    "dataset.args.image_size=64",
    "dataset.args.splits={train:24,val:8}",
    "dataset.crop_size=64",
    "dataset.min_size=56",
    "dataset.max_size=72",
    "stage.max_epochs=1",
    "stage.batch_size=8",
    "stage.inference.scales=[1.0]",
    "num_workers=0",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
]


def compose_config(run_dir: Path, data_dir: Path, overrides: list[str] = (), tiny: bool = True) -> DictConfig:
    """The composed config of `run.py <overrides>` with its run folder at `run_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*(TINY if tiny else []), *overrides,
                                                         f"paths.root={run_dir.parent}",
                                                         f"paths.data_dir={data_dir}",
                                                         f"paths.runs_dir={run_dir.parent}",
                                                         f"paths.run_dir={run_dir}"])
    GlobalHydra.instance().clear()
    return cfg


def strip_hydra(cfg: DictConfig) -> DictConfig:
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg
