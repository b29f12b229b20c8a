"""Composes `python run.py <overrides>` in-process (Hydra's compose API): the resolved configuration a run
would have and its run folder, without running it. The pipeline plans its steps with it; the thesis report
composes a recipe with it to list how a run departs from that recipe."""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class StepComposer:
    """Composes `run.py <overrides>` in-process: the resolved config and the run folder it would use."""

    def __init__(self, config_name: str = "config"):
        self.config_name = config_name

    def __call__(self, overrides: list[str]) -> tuple[dict, Path]:
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        if GlobalHydra.instance().is_initialized():
            cfg = compose(self.config_name, overrides=overrides, return_hydra_config=True)
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose(self.config_name, overrides=overrides, return_hydra_config=True)
        saved = HydraConfig.instance().cfg
        try:
            HydraConfig.instance().set_config(cfg)
            run_dir = str(cfg.hydra.run.dir)
            OmegaConf.set_readonly(cfg.hydra, False)
            cfg.hydra.runtime.output_dir = run_dir
            HydraConfig.instance().set_config(cfg)
            plain = OmegaConf.to_container(cfg, resolve=True)
        finally:
            HydraConfig.instance().cfg = saved
        plain.pop("hydra", None)
        return plain, Path(run_dir)
