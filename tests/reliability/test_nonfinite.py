"""NaN/Inf loss: stop naming the step and keep the last good checkpoint, or skip the batch."""
import math

import pytest
import pytorch_lightning as L
import torch

from tests.reliability.test_signals import loader
from wsss.reliability import AtomicCheckpointIO, LastCheckpoint, NonFiniteLossError, NonFiniteLossGuard


class Blows(L.LightningModule):
    """Its loss is NaN at the given global steps (a stand-in for a diverging stage)."""

    def __init__(self, bad_steps=(), value=math.nan):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.bad_steps, self.value = set(bad_steps), value
        self.seen = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.seen += 1
        return loss * self.value if self.trainer.global_step in self.bad_steps else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)


def fit(tmp_path, module, mode, every=None):
    ckpt = tmp_path / "last.ckpt"
    t = L.Trainer(default_root_dir=tmp_path, max_epochs=2, logger=False, enable_progress_bar=False,
                  enable_checkpointing=True, enable_model_summary=False, accelerator="cpu",  # LastCheckpoint is one
                  plugins=[AtomicCheckpointIO()],
                  callbacks=[NonFiniteLossGuard(mode, ckpt), LastCheckpoint(ckpt, every)])
    t.fit(module, loader())
    return t, ckpt


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_error_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, value):
    module = Blows(bad_steps={10}, value=value)  # epoch 1, batch 2 (8 batches per epoch)
    expected = r"epoch 1, batch 2, global step 10.*last good checkpoint is .*last.ckpt"
    with pytest.raises(NonFiniteLossError, match=expected):
        fit(tmp_path, module, "error", every=3)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 9  # the step checkpoint after batch 9 (batches counted from 1: 3, 6, 8=epoch, 9)
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert all(torch.isfinite(p).all() for p in module.parameters())  # stopped before the backward


def test_skip_drops_the_batch_without_touching_the_weights(tmp_path):
    module = Blows(bad_steps={3})
    t, _ = fit(tmp_path, module, "skip")
    guard = next(c for c in t.callbacks if isinstance(c, NonFiniteLossGuard))
    assert guard.skipped == [3]
    # Lightning still calls optimizer.step (counted in global_step), but no gradient exists, so nothing moves
    assert module.seen == 16 and t.global_step == 16
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_skip_equals_training_without_that_batch(tmp_path):
    """A skipped batch leaves no trace (no momentum, no weight decay step): the run equals one whose step never ran."""
    torch.manual_seed(0)
    a = Blows(bad_steps={0})
    torch.manual_seed(0)
    b = Blows()
    init = {k: v.clone() for k, v in a.state_dict().items()}
    fit(tmp_path / "a", a, "skip")
    b.load_state_dict(init)
    t = L.Trainer(default_root_dir=tmp_path / "b", max_steps=15, logger=False, enable_progress_bar=False,
                  enable_checkpointing=False, enable_model_summary=False, accelerator="cpu", max_epochs=2)
    dl = loader()
    batches = list(dl)[1:] + list(dl)  # the same batches minus the first
    t.fit(b, torch.utils.data.DataLoader(batches, batch_size=None))
    for k in init:
        torch.testing.assert_close(a.state_dict()[k], b.state_dict()[k])


def test_nan_weights_are_never_checkpointed(tmp_path):
    module = Blows()
    ckpt = tmp_path / "last.ckpt"
    t = L.Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, enable_progress_bar=False,
                  enable_checkpointing=False, enable_model_summary=False, accelerator="cpu",
                  callbacks=[NonFiniteLossGuard("error", ckpt)])
    t.fit(module, loader())
    t.save_checkpoint(ckpt)
    good = ckpt.read_bytes()
    with torch.no_grad():
        module.layer.weight[0, 0] = math.nan
    with pytest.raises(NonFiniteLossError, match=r"refusing to write a checkpoint.*layer.weight"):
        t.save_checkpoint(ckpt)
    assert ckpt.read_bytes() == good


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=r"on_nonfinite_loss='ignore': expected one of \['error', 'skip'\]"):
        NonFiniteLossGuard("ignore")
