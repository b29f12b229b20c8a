"""The Trainer callbacks a run chooses (the `callbacks` config group, conf/callbacks/).

Each entry of `callbacks` is a `_target_` spec instantiated with Hydra: `callbacks=[default,lr_monitor]` or
`+callbacks.lr_monitor._target_=pytorch_lightning.callbacks.LearningRateMonitor` add one. The reliability
callbacks (last.ckpt, signals, RNG states, the NaN guard) are not in this group: `tasks.build_trainer` adds
them to every Trainer, so no choice here can remove them.
"""
from __future__ import annotations

import os

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from pytorch_lightning import Callback
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar


def cluster_progress_bar(refresh_rate: int, enabled: bool = True) -> TQDMProgressBar | None:
    """A bar redrawn every `refresh_rate` steps inside a SLURM job (readable in its log file); None elsewhere,
    or when the Trainer shows no progress bar (`trainer.enable_progress_bar=false`)."""
    if not enabled or not os.environ.get("SLURM_JOB_ID"):
        return None
    return TQDMProgressBar(refresh_rate=refresh_rate)


def chosen_callbacks(plain: dict) -> list[Callback]:
    """The callbacks of `plain["callbacks"]` (a resolved config), in their order; a null entry is skipped."""
    out = []
    for name, spec in (plain.get("callbacks") or {}).items():
        if spec is None:
            continue
        if not isinstance(spec, dict) or "_target_" not in spec:
            raise ValueError(f"callbacks.{name}: expected a mapping with a `_target_` (a Lightning Callback "
                             f"class or a function returning one), got {spec!r}")
        try:
            callback = instantiate(spec)
        except InstantiationException as e:
            raise ValueError(f"callbacks.{name}: {e}") from e
        if callback is None:
            continue
        if not isinstance(callback, Callback):
            raise ValueError(f"callbacks.{name}: {spec['_target_']} gave a {type(callback).__name__}, "
                             "expected a pytorch_lightning Callback")
        refuse_second_last_checkpoint(name, callback)
        out.append(callback)
    return out


def refuse_second_last_checkpoint(name: str, callback: Callback) -> None:
    # last.ckpt is written by reliability's LastCheckpoint alone: a ModelCheckpoint(save_last=True) beside it
    # found that file taken and wrote the same weights again as last-v1.ckpt at every fit.
    if isinstance(callback, ModelCheckpoint) and callback.save_last:
        raise ValueError(f"callbacks.{name}: save_last must be false: every run already writes "
                         "checkpoints/last.ckpt (wsss/reliability/last_checkpoint.py)")
