"""A training order that a resumed run continues exactly, with any number of workers and ranks.

`EpochSampler` is a `DistributedSampler` (rank shards of one permutation that every rank draws the same,
padded to equal length), whose permutation comes from `(seed, epoch)` only, and which can start part-way
through an epoch. It yields `(index, sample_seed)` pairs: the seed of each sample's augmentation is a
function of `(seed, epoch, position of the sample in the epoch's permutation)`, never of which worker
loads it or of what a worker drew before, so the batches do not depend on `num_workers`, on persistent
workers, or on where the run was interrupted.

`ResumableLoader` is the `DataLoader` around it. It counts the batches it handed to the training loop,
and its `state_dict` (which Lightning stores in every checkpoint, under the fit loop's `combined_loader`)
holds the epoch and the number of samples this rank consumed. Lightning gives that state back when it
resumes mid-epoch (a `checkpoint_every_n_steps` or SIGUSR1 checkpoint), so the rest of the epoch is the
rest of the same permutation. An epoch-end checkpoint needs no position: the loader is built with the
epoch the fit loop resumes at.

`SeededItems` wraps the data set: it reads `(index, sample_seed)`, makes the sample's augmentation use
that seed (`wsss.reliability.rng.sample_seed`) and, inside a worker process, reseeds the worker's
Python, NumPy and torch generators from it too, for any other random draw a data set makes.
"""
from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from wsss.reliability.rng import sample_seed, seed_augmentation


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes and Python versions (no `hash`)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class EpochSampler(DistributedSampler):
    """
    Args:
        dataset: what is sampled (only its length is used).
        seed: the run's seed; the permutation of epoch `e` is drawn from `(seed, e)`.
        num_replicas, rank: the DDP world size and this process's rank (1 and 0 for one process).
        shuffle: permute (training) or keep the order.
        epoch: the epoch the first iteration draws (the fit loop's epoch when the loader is built).
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 epoch: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=int(seed),
                         drop_last=False)
        self.epoch = int(epoch)
        self.start = 0  # samples of this epoch this rank already consumed

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:  # Lightning calls this before every epoch, also the one being resumed
            self.epoch, self.start = int(epoch), 0

    def resume_at(self, epoch: int, consumed: int) -> None:
        if not 0 <= consumed <= self.num_samples:
            raise ValueError(f"cannot resume epoch {epoch} at sample {consumed}: this rank has {self.num_samples}")
        self.epoch, self.start = int(epoch), int(consumed)

    def order(self) -> list[int]:
        """The whole epoch's padded global order (identical on every rank)."""
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        pad = self.total_size - n
        return order + (order * (pad // n + 1))[:pad]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.order()
        positions = range(self.rank, self.total_size, self.num_replicas)  # this rank's shard
        start, self.start = self.start, 0  # a resume point is used once
        for pos in positions[start:]:
            yield order[pos], derived_seed(self.seed, self.epoch, pos)


class SeededItems(Dataset):
    """Reads `(index, sample_seed)` from `EpochSampler` and loads the item with that seed."""

    def __init__(self, dataset: Dataset):
        seed_augmentation(dataset)  # every stage's training augmentation draws from the sample's seed
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        if get_worker_info() is not None:  # a worker's generators serve data loading only
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
        with sample_seed(seed):
            return self.dataset[index]


class ResumableLoader(DataLoader):
    """A DataLoader over `SeededItems` + `EpochSampler` whose position is saved and restored by Lightning."""

    def __init__(self, dataset: Dataset, sampler: EpochSampler, **kwargs):
        # its own generator: drawing the workers' base seed must not consume the global one that training uses
        kwargs.setdefault("generator", torch.Generator().manual_seed(derived_seed(sampler.seed, -1)))
        super().__init__(SeededItems(dataset), sampler=sampler, **kwargs)
        self.handed = 0  # batches handed out by the current iteration

    def __iter__(self):
        self.begun_at, self.handed = self.sampler.start, 0
        for batch in super().__iter__():
            self.handed += 1
            yield batch

    def consumed(self) -> int:
        n = getattr(self, "begun_at", self.sampler.start) + self.handed * self.batch_size
        return min(n, self.sampler.num_samples)

    def state_dict(self) -> dict[str, int]:
        s = self.sampler
        return {"epoch": s.epoch, "consumed": self.consumed(), "seed": s.seed, "num_replicas": s.num_replicas,
                "dataset_size": len(s.dataset), "batch_size": int(self.batch_size)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        s = self.sampler
        now = {"seed": s.seed, "num_replicas": s.num_replicas, "dataset_size": len(s.dataset),
               "batch_size": int(self.batch_size)}
        changed = {k: (state.get(k), v) for k, v in now.items() if state.get(k) != v}
        if changed:
            raise ValueError("cannot continue the interrupted epoch from last.ckpt: the training order was drawn "
                             "with other settings (checkpoint, now): " +
                             ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) +
                             "; resume with the same seed, devices, data and batch size")
        s.resume_at(state["epoch"], state["consumed"])
