"""Run a function on several gloo ranks of this machine, for the tests of what DDP changes.

`on_gloo_ranks(body, *args, world=2, tmp_path=...)` spawns `world` processes, joins them in one gloo group and
calls `body(rank, *args)` in each; rank 0's return value comes back. `body` must be a module-level function
(the spawned processes import it by name).
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, body: Callable, args: tuple, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = body(rank, *args)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def on_gloo_ranks(body: Callable, *args: Any, world: int = 2, tmp_path: Path) -> Any:
    """Rank 0's `body(0, *args)` after every rank ran `body(rank, *args)` in one gloo group."""
    out = str(Path(tmp_path) / f"rank0_{uuid.uuid4().hex}.pt")
    mp.spawn(_rank_main, args=(world, free_port(), body, args, out), nprocs=world)
    return torch.load(out)
