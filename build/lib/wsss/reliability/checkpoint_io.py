"""Checkpoints written to a temporary file beside the target, then renamed into place.

Lightning's `TorchCheckpointIO` stages the file through fsspec, whose local transaction writes to
the system temp folder and then `shutil.move`s it: when /tmp and the run folder are on different
file systems (node-local /tmp, run folders on NFS/Lustre), that move is a copy that a SIGKILL can
cut short, leaving a truncated `last.ckpt` that the rerun then cannot resume from (and a large
checkpoint may not fit in /tmp at all). Here the bytes go to `.<name>.<random>.tmp` in the target's
own folder and `os.replace` makes them visible at once (wsss.artifacts.atomic_write_bytes).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from wsss.artifacts import atomic_write_bytes


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(Path(path), buf.getvalue())
