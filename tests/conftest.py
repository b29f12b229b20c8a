import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session (the set is written once per spec)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    from tests.helpers import compose_config

    def make(*overrides: str, run: str = "run", tiny: bool = True):
        return compose_config(tmp_path / run, data_dir, list(overrides), tiny=tiny)

    return make


@pytest.fixture
def run_stage(make_cfg):
    """Run `run.py <overrides>` in-process; returns (metrics, run_dir)."""
    from wsss.tasks import run

    def go(*overrides: str, run_name: str = "run"):
        cfg = make_cfg(*overrides, run=run_name)
        metrics = run(cfg)
        return metrics, Path(cfg.paths.run_dir)

    return go


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> Path:
    """A tiny VOC2012 + SBD tree in the real layout (tests/fixtures/voc_layout.py), written once per session."""
    from tests.fixtures.voc_layout import make_voc_tree

    return make_voc_tree(tmp_path_factory.mktemp("VOCdevkit") / "VOC2012")
