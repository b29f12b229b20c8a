"""SignalCheckpoint on a tiny Lightning model, in-process: the signal is sent from inside a training step."""
import os
import signal

import pytest
import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from wsss.reliability import AtomicCheckpointIO, RNGState, SignalCheckpoint, StoppedBySignal


class Tiny(L.LightningModule):
    def __init__(self, send_at: int | None = None, sig: int = signal.SIGTERM):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.send_at, self.sig = send_at, sig

    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == self.send_at:
            os.kill(os.getpid(), self.sig)
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)), batch_size=4)


def trainer(tmp_path, callbacks, **kw):
    return L.Trainer(default_root_dir=tmp_path, max_epochs=2, logger=False, enable_progress_bar=False,
                     enable_checkpointing=False, enable_model_summary=False, callbacks=callbacks,
                     plugins=[AtomicCheckpointIO()], accelerator="cpu", **kw)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_after_the_current_step_and_stops(tmp_path, sig, caplog, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    t = trainer(tmp_path, [SignalCheckpoint(ckpt), RNGState()])
    with pytest.raises(StoppedBySignal) as stop:
        t.fit(Tiny(send_at=5, sig=sig), loader())
    assert stop.value.code == 128 + int(sig)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["global_step"] == 6  # the step during which the signal came finished, then the save
    assert f"received {sig.name}: saved {ckpt}" in caplog.text
    assert {s: signal.getsignal(s) for s in before} == before  # handlers given back

    # the same training resumed from it runs the remaining 10 steps
    t2 = trainer(tmp_path, [SignalCheckpoint(ckpt), RNGState()])
    t2.fit(Tiny(), loader(), ckpt_path=ckpt)
    assert t2.global_step == 16


def test_sigusr1_under_slurm_requeues_the_job(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setattr("wsss.reliability.signals.subprocess.run",
                        lambda cmd, **kw: calls.append(cmd) or type("R", (), {"returncode": 0, "stderr": ""})())
    monkeypatch.setattr("pytorch_lightning.trainer.connectors.accelerator_connector.SLURMEnvironment.detect",
                        staticmethod(lambda: False))
    ckpt = tmp_path / "last.ckpt"
    with pytest.raises(StoppedBySignal):
        trainer(tmp_path, [SignalCheckpoint(ckpt)]).fit(Tiny(send_at=2, sig=signal.SIGUSR1), loader())
    assert calls == [["scontrol", "requeue", "1234"]] and ckpt.is_file()


class Writes(Tiny):
    """A predict pass that writes one artifact per batch and signals itself during batch `send_at`."""

    def __init__(self, folder, send_at: int, sig: int):
        super().__init__()
        from wsss.artifacts import ArtifactDir

        self.out, self.send_at, self.sig = ArtifactDir(folder, ".npz"), send_at, sig

    def predict_step(self, batch, batch_idx):
        if batch_idx == self.send_at:
            os.kill(os.getpid(), self.sig)
        self.out.write_npz(f"item{batch_idx:02d}", y=self.layer(batch[0]).detach().numpy())


def predict_until_signal(tmp_path, sig, monkeypatch, slurm: bool):
    calls = []
    if slurm:
        monkeypatch.setenv("SLURM_JOB_ID", "77")
    else:
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setattr("wsss.reliability.signals.subprocess.run",
                        lambda cmd, **kw: calls.append(cmd) or type("R", (), {"returncode": 0, "stderr": ""})())
    monkeypatch.setattr("pytorch_lightning.trainer.connectors.accelerator_connector.SLURMEnvironment.detect",
                        staticmethod(lambda: False))
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    module = Writes(tmp_path / "out", send_at=3, sig=sig)
    with pytest.raises(StoppedBySignal) as stop:
        trainer(tmp_path, [SignalCheckpoint(tmp_path / "last.ckpt")]).predict(module, loader(),
                                                                                 return_predictions=False)
    assert {s: signal.getsignal(s) for s in before} == before  # handlers given back
    return stop.value, calls


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_during_predict_stops_after_the_current_batch(tmp_path, sig, monkeypatch, caplog):
    stop, calls = predict_until_signal(tmp_path, sig, monkeypatch, slurm=False)
    assert stop.code == 128 + int(sig)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"item{i:02d}.npz" for i in range(4)]  # the batch during which it came was finished
    assert calls == [] and not (tmp_path / "last.ckpt").exists()
    assert f"received {sig.name}: stopped predict after batch 3" in caplog.text


def test_sigusr1_during_predict_under_slurm_requeues(tmp_path, monkeypatch):
    stop, calls = predict_until_signal(tmp_path, signal.SIGUSR1, monkeypatch, slurm=True)
    assert stop.code == 128 + int(signal.SIGUSR1) and calls == [["scontrol", "requeue", "77"]]


def test_sigterm_during_predict_under_slurm_does_not_requeue(tmp_path, monkeypatch):
    stop, calls = predict_until_signal(tmp_path, signal.SIGTERM, monkeypatch, slurm=True)
    assert stop.code == 128 + int(signal.SIGTERM) and calls == []


# -- outside Lightning's loops: a task's plain-Python evaluation ----------------------------------------------
class Scontrol:
    """subprocess.run that records `scontrol` calls (no SLURM here) and runs every other command."""

    def __init__(self, run):
        self.run, self.calls = run, []

    def __call__(self, args, **kwargs):
        if args[0] != "scontrol":
            return self.run(args, **kwargs)
        self.calls.append(args)
        return type("Done", (), {"returncode": 0, "stderr": ""})()


@pytest.mark.parametrize("sig,requeued", [(signal.SIGUSR1, True), (signal.SIGTERM, False)])
def test_a_signal_during_an_evaluation_stops_the_run_and_requeues_on_usr1(tmp_path, data_dir, monkeypatch, sig,
                                                                           requeued):
    """The CAM `evaluate` task (plain Python, no Lightning loop) gets the loops' policy: stop at once with
    128 + signum, SIGUSR1 requeues the SLURM job first; metrics.json is not written, handlers are given back."""
    import wsss.reliability.signals as signals
    import wsss.tasks as tasks
    from tests.helpers import compose_config

    scontrol = Scontrol(signals.subprocess.run)
    monkeypatch.setattr(signals.subprocess, "run", scontrol)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    from wsss.stage_contract import Task
    from wsss.stages.cam import CAMStage

    stops = Task(lambda ctx: os.kill(os.getpid(), sig) or {"never": 1.0})
    monkeypatch.setitem(CAMStage.tasks, "evaluate", stops)
    ignored = lambda *_: None  # noqa: E731  (without the protection the run goes on instead of killing pytest)
    previous = {s: signal.signal(s, ignored) for s in (signal.SIGTERM, signal.SIGUSR1)}
    before = {s: signal.getsignal(s) for s in previous}
    cfg = compose_config(tmp_path / "run", data_dir, ["tasks=[evaluate]"])
    try:
        with pytest.raises(StoppedBySignal) as stop:
            tasks.run(cfg)
    finally:
        after = {s: signal.signal(s, handler) for s, handler in previous.items()}
    assert stop.value.code == 128 + int(sig)
    assert scontrol.calls == ([["scontrol", "requeue", "4242"]] if requeued else [])
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert after == before  # handlers given back
