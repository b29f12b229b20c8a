"""Checkpoint files: read with weights_only=True everywhere (the resume too); a truncated, non-checkpoint or
foreign last.ckpt named with the way out (delete it, or ckpt_path=null)."""
from __future__ import annotations

import os

import pytest
import torch

from tests.reliability.common import run_in_process
from wsss.reliability.checkpoint_io import AtomicCheckpointIO


class RunsCode:
    """A pickle that runs code when loaded without weights_only: it creates the file it names."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_lightning_reads_every_checkpoint_with_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # a default that would unpickle anything
    marker, crafted = tmp_path / "code-ran", tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": RunsCode(str(marker))}, crafted)
    with pytest.raises(ValueError, match="cannot be read as a checkpoint.*ckpt_path=null"):
        AtomicCheckpointIO().load_checkpoint(crafted)  # what trainer.fit(ckpt_path=...) calls
    assert not marker.exists()
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, crafted)
    assert AtomicCheckpointIO().load_checkpoint(crafted)["epoch"] == 3


def full_checkpoint_bytes(tmp_path) -> bytes:
    path = tmp_path / "real.ckpt"
    torch.save({"state_dict": {f"w{i}": torch.randn(64, 64) for i in range(4)}, "epoch": 1}, path)
    return path.read_bytes()


@pytest.mark.parametrize("content", ["truncated", "text", "foreign"])
def test_a_damaged_or_foreign_last_ckpt_is_named_with_the_way_out(content, tmp_path, data_dir):
    run_dir = tmp_path / "classifier" / "synthetic" / "resnet18" / "damaged"
    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    if content == "truncated":
        last.write_bytes(full_checkpoint_bytes(tmp_path)[:5000])
    elif content == "text":
        last.write_text("this is not a checkpoint\n")
    else:  # a checkpoint of another model (e.g. a P-NOC run copied here)
        torch.save({"state_dict": {"net.other.weight": torch.ones(3, 3)}, "epoch": 1}, last)
    with pytest.raises(ValueError) as error:
        run_in_process(run_dir, data_dir, "tasks=[fit]")
    message = str(error.value)
    assert str(last) in message and "ckpt_path=null" in message and "delete it" in message, message
    assert len(message) < 1500  # a sentence, not a state-dict dump
    assert os.path.getsize(last) > 0  # nothing was overwritten


def test_a_checkpoint_save_checks_the_free_space_first(tmp_path, monkeypatch):
    from collections import namedtuple

    from wsss.reliability import disk

    last = tmp_path / "last.ckpt"
    last.write_bytes(b"the previous checkpoint")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1024**2, 1024**2))
    with pytest.raises(OSError, match=f"{tmp_path}: saving last.ckpt needs about .* only 0.00 GiB are free"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, last)
    assert last.read_bytes() == b"the previous checkpoint" and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, last)
    assert torch.load(last, weights_only=True)["state_dict"]["w"].sum() == 1000
