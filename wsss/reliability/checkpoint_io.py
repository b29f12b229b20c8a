"""Checkpoints written to a temporary file beside the target, then renamed into place.

Lightning's `TorchCheckpointIO` stages the file through fsspec, whose local transaction writes to
the system temp folder and then `shutil.move`s it: when /tmp and the run folder are on different
file systems (node-local /tmp, run folders on NFS/Lustre), that move is a copy that a SIGKILL can
cut short, leaving a truncated `last.ckpt` that the rerun then cannot resume from (and a large
checkpoint may not fit in /tmp at all). Here the bytes go to `.<name>.<random>.tmp` in the target's
own folder and `os.replace` makes them visible at once (wsss.artifacts.atomic_write_bytes).

Reading goes through `wsss.models.checkpoints.load_checkpoint`: `weights_only=True` always, and a damaged file
named with the way out.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from wsss.artifacts import atomic_write_bytes
from wsss.reliability.disk import check_free_space


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        # before writing: a full disk fails here with the sizes, not mid-write (the old file stays either way)
        check_free_space(Path(path).parent, buf.getbuffer().nbytes, f"saving {Path(path).name}")
        atomic_write_bytes(Path(path), buf.getvalue())

    def load_checkpoint(self, path, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Every checkpoint Lightning reads (a resume's `ckpt_path` included) with `weights_only=True`,
        whatever the caller or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD asks: no code runs from a checkpoint file."""
        from wsss.models.checkpoints import load_checkpoint

        return load_checkpoint(path, "ckpt_path")
