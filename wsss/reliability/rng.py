"""Random states that survive a resume, and augmentations that follow the seed.

`RNGState` stores the Python, NumPy and torch (CPU and CUDA) generator states in every checkpoint
and puts them back when training resumes, before the train loader draws its shuffle. Resuming
from an epoch-end checkpoint then replays exactly the epochs an uninterrupted run would have
seen (same order, same augmentations). The states are stored as tensors and plain ints, so the
checkpoint still loads with `torch.load(weights_only=True)`.

`TorchSeededTransform` fixes what `seed_everything` cannot: albumentations 2 gives every
`Compose` its own generator seeded from OS entropy, so augmentations differed between two runs of
the same seed. The wrapper reseeds the transform for each sample: with the sample's own seed when the
loader gives one (`sample_seed`, set by `wsss.data.sampler.SeededItems` from the seed, the epoch and
the sample's position in it, so the augmentation does not depend on workers or on a resume), otherwise
from torch's generator, which `seed_everything` seeds and `RNGState` restores.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from pytorch_lightning import Callback


def capture_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState(Callback):
    """Saves the RNG states with each checkpoint; restores them when training resumes from it."""

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()  # called while the checkpoint is written

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore_rng(state_dict)  # Lightning calls this before the fit loop builds the train iterator


_SAMPLE_SEED: int | None = None  # the seed of the sample being loaded in this process, if the loader gives one


@contextmanager
def sample_seed(seed: int) -> Iterator[None]:
    """While loading one sample: its augmentation draws from `seed` (see TorchSeededTransform)."""
    global _SAMPLE_SEED
    before, _SAMPLE_SEED = _SAMPLE_SEED, int(seed)
    try:
        yield
    finally:
        _SAMPLE_SEED = before


class TorchSeededTransform:
    """Wraps an albumentations transform; each call reseeds it from the sample's seed or torch's generator."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, **data):
        seed = _SAMPLE_SEED if _SAMPLE_SEED is not None else int(torch.randint(0, 2**62, (1,)).item())
        self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return self.transform(**data)

    def __repr__(self) -> str:
        return f"TorchSeededTransform({self.transform!r})"


def seed_augmentation(dataset) -> None:
    """The one place every training data set gets per-sample augmentation seeds
    (`wsss.data.sampler.SeededItems` calls it): its `transform`, when an albumentations pipeline, is wrapped
    in a `TorchSeededTransform`."""
    tf = getattr(dataset, "transform", None)
    if tf is not None and hasattr(tf, "set_random_state") and not isinstance(tf, TorchSeededTransform):
        dataset.transform = TorchSeededTransform(tf)
