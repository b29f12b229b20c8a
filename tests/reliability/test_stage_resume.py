"""The affinity and DeepLab stages, like the CAM and saliency stages (test_kill_fit.py, tests/saliency), give
the same weights with one seed, and a fit resumed from an epoch's last.ckpt ends where the uninterrupted fit
does."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from tests.helpers import compose_config
from tests.reliability.common import SMALL, load_ckpt, one_thread
from tests.reliability.test_stage_augmentation import affinity_labels
from wsss.reliability.last_checkpoint import LastCheckpoint
from wsss.tasks import run

STAGES = {
    "affinity": ["stage=affinity", "stage.radius=3", "stage.batch_size=4"],
    "deeplab": ["stage=deeplab", "stage.masks=gt", "stage.model.decoder_channels=16", "stage.batch_size=4"],
}


class Interrupted(RuntimeError):
    pass


def fit(run_dir, data_dir, name: str, epochs: int = 2) -> dict:
    no_validation = "stage.val_split=null" if name == "deeplab" else "seed=0"
    overrides = [*SMALL, *STAGES[name], "tasks=[fit]", f"stage.max_epochs={epochs}", no_validation]
    cfg = compose_config(run_dir, data_dir, overrides, tiny=False)
    if name == "affinity" and not (run_dir / "affinity_labels").is_dir():
        plain = OmegaConf.to_container(cfg, resolve=True)
        affinity_labels(get_class(plain["stage"]["_target_"])(plain))
    with one_thread():
        run(cfg)
    return load_ckpt(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STAGES))
def test_same_seed_same_weights_and_exact_resume(name, tmp_path, data_dir, monkeypatch):
    straight = fit(tmp_path / "a", data_dir, name)
    again = fit(tmp_path / "b", data_dir, name)
    save = LastCheckpoint.on_train_epoch_end

    def save_then_die(self, trainer, module):  # the job dies right after epoch 0's last.ckpt
        save(self, trainer, module)
        raise Interrupted

    monkeypatch.setattr(LastCheckpoint, "on_train_epoch_end", save_then_die)
    with pytest.raises(Interrupted):
        fit(tmp_path / "c", data_dir, name)
    monkeypatch.setattr(LastCheckpoint, "on_train_epoch_end", save)
    resumed = fit(tmp_path / "c", data_dir, name)
    for key, value in straight.items():
        assert torch.equal(again[key], value), f"{name}: {key} differs between two runs of one seed"
        assert torch.equal(resumed[key], value), f"{name}: {key} differs after a resume"
