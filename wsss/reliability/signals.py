"""Pre-emption: on SIGTERM or SIGUSR1, save `last.ckpt` at the next step boundary and exit.

SLURM sends SIGUSR1 before a time limit (`--signal=USR1@90`) and SIGTERM on pre-emption or
`scancel`. Lightning on its own reacts to neither in a way `ckpt_path=last` can resume from: outside
SLURM, SIGUSR1 kills the process and SIGTERM ends `fit` without a checkpoint (exit status 0, as if
finished); under SLURM, SIGUSR1 writes `hpc_ckpt_<n>.ckpt` from inside the signal handler (mid-step),
which `ckpt_path=last` ignores. So this callback owns both
signals, in and outside SLURM, with one policy:

1. the handler only records the signal (no work inside a signal handler);
2. at the next training-step boundary (or the end of a validation pass) all ranks agree that one of
   them was signalled, and `run_dir/checkpoints/last.ckpt` is written, the same state
   `ModelCheckpoint` saves at a step boundary;
3. under SLURM, SIGUSR1 also requeues the job (`scontrol requeue`, rank 0), as Lightning's
   auto-requeue would; SIGTERM does not (scancel means stop; a pre-empting SLURM requeues by itself);
4. the run stops with `StoppedBySignal` (exit status 128 + signal number, so `&&` chains and
   `afterok` dependencies do not treat an interrupted stage as done).

Rerunning the same command resumes from that checkpoint (`tasks.fit` passes `ckpt_path=last`).

The same policy holds in the other Lightning loops of a run (`predict`, and `test` / `validate` outside
`fit`), minus the checkpoint: the signal is handled after the current batch, whose artifacts are then
complete (each file is renamed into place), the SLURM job is requeued on SIGUSR1, and the run stops
with 128 + signal before the task writes its manifest, so the folder reads as unfinished and the
rerun writes only the missing files. Each rank decides from its own signals there (the ranks' shards
may differ by one batch, so a collective per batch could hang); SLURM signals every task of a job.
Outside these loops (the plain-Python evaluation, CRF pools) `stop_on_signal` stops the run at once
with the same exit status and requeue: nothing is written per item there, and metrics and manifests are
written atomically at the end, so the rerun redoes that task.
"""
from __future__ import annotations

import logging
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as L
from pytorch_lightning import Callback

from wsss.reliability.run_lock import slurm_job_id

log = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StoppedBySignal(SystemExit):
    """A loop stopped on a signal (training: after saving `checkpoint`); the exit status is 128 + signum."""

    def __init__(self, signum: int, checkpoint: Path | None):
        super().__init__(128 + int(signum))
        self.signum, self.checkpoint = int(signum), checkpoint


class SignalCheckpoint(Callback):
    """Turns SIGTERM/SIGUSR1 during training into a checkpoint at a step boundary plus a clean stop.

    Args:
        checkpoint: where to save (the run's `checkpoints/last.ckpt`, which a rerun resumes from).
        signals: the signals to catch.
        requeue_on: signals that also requeue the SLURM job (only inside a SLURM job).
    """

    def __init__(self, checkpoint: str | Path, signals=DEFAULT_SIGNALS, requeue_on=(signal.SIGUSR1,)):
        self.checkpoint = Path(checkpoint)
        self.signals = tuple(signals)
        self.requeue_on = tuple(requeue_on)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    # -- handlers ---------------------------------------------------------------------------------
    def _record(self, signum: int, _frame) -> None:
        self.received = signum  # only a flag: the work happens at the next step boundary

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python accepts handlers in the main thread only
        self.received = None
        for s in self.signals:
            self._previous[s] = signal.getsignal(s)
            signal.signal(s, self._record)

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            if handler is not None:
                signal.signal(s, handler)
        self._previous = {}

    # -- hooks ------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # after Lightning registered its own handlers, which we restore at the end

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._maybe_stop(trainer, f"after batch {batch_idx}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._maybe_stop(trainer, "after validation")
        elif trainer.state.fn == "validate":
            self._restore()

    # predict / test / validate outside fit: stop after the current batch, without a checkpoint
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_outside_fit(trainer, "predict", batch_idx)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_outside_fit(trainer, "test", batch_idx)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._install()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.fn == "validate":
            self._stop_outside_fit(trainer, "validate", batch_idx)

    # -- stopping ---------------------------------------------------------------------------------
    def _signalled(self, trainer: L.Trainer) -> int | None:
        """The signal number if any rank was signalled (all ranks take the same branch)."""
        if trainer.world_size > 1:
            anyone = trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)
            if anyone and self.received is None:
                return int(signal.SIGTERM)
            return self.received if anyone else None
        return self.received

    def _maybe_stop(self, trainer: L.Trainer, where: str) -> None:
        signum = self._signalled(trainer)
        if signum is None:
            return
        name = signal.Signals(signum).name
        trainer.save_checkpoint(self.checkpoint, weights_only=False)  # collective: every rank calls it
        requeued = requeue_slurm_job(signum, self.requeue_on, trainer.is_global_zero)
        if trainer.is_global_zero:
            log.warning("received %s: saved %s at epoch %d, global step %d (%s); %s", name, self.checkpoint,
                        trainer.current_epoch, trainer.global_step, where,
                        "the SLURM job was requeued and will resume from it" if requeued
                        else "rerun the same command to resume from it")
        self._restore()
        raise StoppedBySignal(signum, self.checkpoint)

    def _stop_outside_fit(self, trainer: L.Trainer, loop: str, batch_idx: int) -> None:
        signum = self.received
        if signum is None:
            return
        requeued = requeue_slurm_job(signum, self.requeue_on, trainer.is_global_zero)
        log.warning("received %s: stopped %s after batch %d on rank %d; what was written so far is complete, and "
                    "%s writes the rest", signal.Signals(signum).name, loop, batch_idx, trainer.global_rank,
                    "the requeued SLURM job" if requeued else "rerunning the same command")
        self._restore()
        raise StoppedBySignal(signum, None)


def requeue_slurm_job(signum: int, requeue_on, is_global_zero: bool) -> bool:
    """`scontrol requeue` this SLURM job (rank 0 only) when `signum` is one of `requeue_on`; whether it was."""
    job = slurm_job_id()
    if job is None or signum not in requeue_on or not is_global_zero:
        return False
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log.error("could not requeue SLURM job %s: %s; resubmit the same command to resume", job, e)
        return False
    if done.returncode != 0:
        log.error("scontrol requeue %s failed (%d): %s", job, done.returncode, done.stderr.strip())
        return False
    return True


@contextmanager
def stop_on_signal(is_global_zero: bool, signals=DEFAULT_SIGNALS, requeue_on=(signal.SIGUSR1,)):
    """Outside Lightning's loops (a task's plain-Python evaluation, a CRF pool, writing tables): SIGTERM or
    SIGUSR1 stops the run at once with 128 + signum, and under SLURM SIGUSR1 first requeues the job, as inside
    the loops. Nothing is lost: these phases write their files atomically, and the rerun redoes only them.
    Inside a loop `SignalCheckpoint` holds the signals and gives them back to this handler at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame) -> None:
        requeued = requeue_slurm_job(signum, requeue_on, is_global_zero)
        log.warning("received %s outside a training or predict loop: stopped; %s redoes the unfinished task",
                    signal.Signals(signum).name, "the requeued SLURM job" if requeued else "rerunning the same command")
        raise StoppedBySignal(signum, None)

    previous = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
