"""The `callbacks` config group (conf/callbacks/, wsss/callbacks.py): options chosen on the command line reach
the Trainer and act on the fit; the reliability callbacks are on every Trainer whatever the group says."""
import csv
from pathlib import Path

import pytest
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

from wsss.reliability import LastCheckpoint, NonFiniteLossGuard, RNGState, SignalCheckpoint

RELIABILITY = (LastCheckpoint, SignalCheckpoint, RNGState, NonFiniteLossGuard)
FIT_ONLY = ["tasks=[fit]", "logger=csv"]


def trainer_of(make_cfg, *overrides):
    from wsss.tasks import Context

    return Context(make_cfg(*FIT_ONLY, *overrides)).trainer


def kinds(trainer) -> set[type]:
    return {type(cb) for cb in trainer.callbacks}


@pytest.mark.parametrize("choice", ["callbacks=none", "callbacks=default", "callbacks={}", "~callbacks"])
def test_reliability_callbacks_are_on_every_trainer(make_cfg, choice):
    assert set(RELIABILITY) <= kinds(trainer_of(make_cfg, choice))


def test_progress_bar_for_log_files_inside_a_slurm_job_only(make_cfg, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert TQDMProgressBar not in kinds(trainer_of(make_cfg, "trainer.enable_progress_bar=true"))
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    bars = [cb for cb in trainer_of(make_cfg, "trainer.enable_progress_bar=true").callbacks
            if type(cb) is TQDMProgressBar]
    assert [b.refresh_rate for b in bars] == [50]
    assert TQDMProgressBar not in kinds(trainer_of(make_cfg, "trainer.enable_progress_bar=false"))


def test_options_chosen_on_the_command_line_act_on_the_fit(make_cfg):
    """early_stopping with a min_delta no epoch can beat stops a 4-epoch fit after its second epoch;
    lr_monitor logs the learning rate; model_checkpoint keeps the epoch of the lowest logged val/loss
    beside last.ckpt."""
    from wsss.tasks import Context

    cfg = make_cfg(*FIT_ONLY, "callbacks=[default,lr_monitor,early_stopping,model_checkpoint]",
                   "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=100",
                   "stage.max_epochs=4", "trainer.log_every_n_steps=1")
    ctx = Context(cfg)
    assert {LearningRateMonitor, EarlyStopping, ModelCheckpoint, *RELIABILITY} <= kinds(ctx.trainer)
    ctx.trainer.fit(ctx.module, datamodule=ctx.dm)
    assert ctx.trainer.current_epoch == 2  # epoch 0 sets the best, epoch 1 does not beat it by 100: stop
    run_dir = Path(cfg.paths.run_dir)
    with (run_dir / "logs" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert any(k.startswith("lr-") and r[k] for r in rows for k in r)
    val_loss = {int(r["epoch"]): float(r["val/loss"]) for r in rows if r.get("val/loss")}
    best = min(val_loss, key=val_loss.get)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt", f"top-{best:03d}.ckpt"]


def test_a_second_last_checkpoint_is_refused(make_cfg):
    with pytest.raises(ValueError, match=r"callbacks\.model_checkpoint: save_last must be false"):
        trainer_of(make_cfg, "callbacks=[default,model_checkpoint]", "callbacks.model_checkpoint.save_last=true")


@pytest.mark.parametrize(("override", "expected"), [
    ("+callbacks.typo=3", r"callbacks\.typo: expected a mapping with a `_target_`"),
    ("+callbacks.odd._target_=builtins.dict", r"callbacks\.odd: builtins\.dict gave a dict, expected"),
    ("+callbacks.gone._target_=pytorch_lightning.callbacks.NoSuchCallback", r"callbacks\.gone: "),
])
def test_a_bad_entry_is_refused_naming_its_key(make_cfg, override, expected):
    with pytest.raises(ValueError, match=expected):
        trainer_of(make_cfg, override)
