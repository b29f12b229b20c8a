"""Batch-level losses under DDP: what the thesis code's DataParallel computed on the whole gathered batch.

A loss that pairs the images of a batch with each other (C²AM's contrast, Eq. 7) sees only a device's share of
the batch under DDP. `gather_rows` gives every rank the whole batch, differentiably: each rank computes the
loss on it and sends gradient to every rank's rows; summed over ranks by the backward and averaged over ranks
by DDP, a parameter gets exactly the gradient of that loss on one device holding the whole batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rows = torch.tensor([x.shape[0]], device=x.device)
        counts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(counts, rows)
        if any(int(c) != x.shape[0] for c in counts):
            raise RuntimeError(f"gather_rows: the ranks hold {[int(c) for c in counts]} rows; a batch-level loss "
                               "across devices needs the same batch on every rank (a DistributedSampler pads to it)")
        parts = [torch.empty_like(x) for _ in counts]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # the gradient every rank's loss sends to each row
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """(W·B, ...) the rows of every rank in rank order, differentiable; `x` itself outside a process group of
    more than one rank."""
    return _GatherRows.apply(x) if world_size() > 1 else x
