"""Reading weights back from checkpoint files: always `weights_only=True` (no pickle), errors name the key."""
from __future__ import annotations

from pathlib import Path

import torch


def load_checkpoint(path: str | Path, key: str) -> dict:
    """The whole checkpoint dictionary at `path`, the value of config key `key`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def state_dict_of(checkpoint: dict) -> dict:
    """A Lightning checkpoint's `state_dict`, or the dictionary itself for a bare state dict."""
    return checkpoint.get("state_dict", checkpoint)


def read_cam_network(path: Path, num_classes: int, key: str, dataset: str = "the data set") -> tuple[dict, dict]:
    """(CAMNet state dict without the `net.` prefix, the config it was trained with).

    Loaded with `weights_only=True`. A checkpoint without a CAM head, or of another class count, is a
    ValueError naming the file and what was expected.
    """
    ckpt = load_checkpoint(path, key)
    state = state_dict_of(ckpt)
    net = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")} or dict(state)
    head = net.get("head.weight")
    if head is None:
        raise ValueError(f"{path}: no `net.head.weight` in the checkpoint; expected the checkpoint of a CAM "
                         "classifier stage (classifier, puzzle, occse, poc, pnoc)")
    if head.shape[0] != num_classes:
        raise ValueError(f"{path}: the checkpoint classifies {head.shape[0]} classes but {dataset} has "
                         f"{num_classes}; use it on the data set it was trained on")
    trained = (ckpt.get("hyper_parameters") or {}).get("cfg") or {}
    return net, trained
