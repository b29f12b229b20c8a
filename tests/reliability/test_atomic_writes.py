"""Every output of a run reaches its final name by a rename from a sibling temporary, never by writing under it.

A kill can only be tested by luck of timing (test_kill_fit, test_kill_predict), so these tests watch the
file system calls instead: during one fit + predict, every `open` for writing and every rename is
recorded. `last.ckpt`, each CAM file and the manifest must each be the target of a rename whose source is
in the same folder (on another file system, as Lightning's own checkpoint IO stages it in /tmp, the move
is a copy that a kill can cut short), and must never be opened for writing under their own name.
Removing `AtomicCheckpointIO` from tasks.build_trainer, or writing artifacts directly, fails them.
"""
from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import pytest
import torch

from tests.reliability.common import load_ckpt, run_in_process
from wsss.reliability import NonFiniteLossError

RUN = ["tasks=[fit,predict]", "stage.max_epochs=1", "dataset.predict_splits=[val]"]


class WriteSpy:
    """Records (source, target) of renames and the paths opened for writing, while installed."""

    def __init__(self, mp: pytest.MonkeyPatch):
        self.renamed: dict[Path, list[Path]] = {}
        self.opened: set[Path] = set()
        for mod, name in ((os, "replace"), (os, "rename")):
            mp.setattr(mod, name, self._rename(getattr(mod, name)))
        for mod in (builtins, io):
            mp.setattr(mod, "open", self._open(mod.open))
        mp.setattr(os, "open", self._os_open(os.open))

    def _rename(self, real):
        def rename(src, dst, *a, **kw):
            real(src, dst, *a, **kw)
            self.renamed.setdefault(Path(os.fsdecode(dst)).resolve(), []).append(Path(os.fsdecode(src)).resolve())
        return rename

    def _open(self, real):
        def open_(file, mode="r", *a, **kw):
            if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
                self.opened.add(Path(os.fsdecode(file)).resolve())
            return real(file, mode, *a, **kw)
        return open_

    def _os_open(self, real):
        def os_open(path, flags, *a, **kw):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                self.opened.add(Path(os.fsdecode(path)).resolve())
            return real(path, flags, *a, **kw)
        return os_open

    def problems(self, final: Path) -> list[str]:
        final = final.resolve()
        out = []
        if final in self.opened:
            out.append(f"{final} was opened for writing under its final name")
        sources = self.renamed.get(final, [])
        if not sources:
            out.append(f"{final} was never renamed into place")
        out += [f"{final} was renamed from {s}, outside its own folder" for s in sources if s.parent != final.parent]
        return out


@pytest.fixture(scope="module")
def spied_run(tmp_path_factory, module_tmp):
    data_dir = tmp_path_factory.getbasetemp() / "data-reliability"
    run_dir = module_tmp("atomic") / "run"
    with pytest.MonkeyPatch.context() as mp:
        spy = WriteSpy(mp)
        run_in_process(run_dir, data_dir, *RUN)
    return run_dir, spy


def test_last_checkpoint_is_renamed_into_place_from_its_own_folder(spied_run):
    run_dir, spy = spied_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert load_ckpt(ckpt)["global_step"] > 0
    assert spy.problems(ckpt) == []


def test_artifacts_and_manifest_are_renamed_into_place_from_their_own_folder(spied_run):
    run_dir, spy = spied_run
    cams = run_dir / "cams" / "val"
    finals = sorted(cams.glob("*.npz")) + [cams / "manifest.json", run_dir / "metrics.json"]
    assert len(finals) == 6
    assert [p for f in finals for p in spy.problems(f)] == []
    assert not list(cams.glob(".*.tmp"))


def test_exploding_learning_rate_stops_the_run_and_keeps_finite_weights(tmp_path, data_dir):
    """Through the real config (so the NaN guard must be wired into every trainer): stage.lr=1e30 diverges
    within a few steps; the run must fail naming the step, and last.ckpt must hold finite weights."""
    run_dir = tmp_path / "diverges"
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss .* at epoch \d+, batch \d+, global step"):
        run_in_process(run_dir, data_dir, "tasks=[fit]", "stage.lr=1e30", "checkpoint_every_n_steps=1")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        weights = load_ckpt(ckpt)["state_dict"]
        bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        assert bad == []
