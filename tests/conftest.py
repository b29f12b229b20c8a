import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session (the set is written once per spec)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    """`module_tmp(name)`: a new folder for one test module's shared fixtures, removed with everything in it
    when the module's tests are done, unless one of them failed. Each run folder holds checkpoints of
    100-600 MB; kept to the session's end, the suite's would fill about 19 GB of disk."""
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    failed_before = request.session.testsfailed

    def make(name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))

    yield make
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)


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


#: the shared classifier: TINY's classifier, trained, its CAMs of train and val predicted (no evaluate)
TRAINED_CLASSIFIER = ["stage=classifier", "tasks=[fit,predict]"]


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory, data_dir):
    """One tiny classifier run (TRAINED_CLASSIFIER on TINY: checkpoints/last.ckpt, cams/train, cams/val),
    trained once per session for the tests that only need *a* trained classifier.

    Yields `copy_to(folder) -> folder`: a test gets its own copy of the run folder, never the original, so
    no test can change another's input; the original is checked unchanged when the session ends."""
    from tests.helpers import compose_config
    from wsss.tasks import run

    original = tmp_path_factory.mktemp("trained_classifier") / "run"
    run(compose_config(original, data_dir, TRAINED_CLASSIFIER))
    trained = tree_digest(original)

    def copy_to(folder: Path) -> Path:
        shutil.copytree(original, folder)
        return folder

    yield copy_to
    assert tree_digest(original) == trained, f"a test changed the shared classifier run {original}"
