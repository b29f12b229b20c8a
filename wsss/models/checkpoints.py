"""Reading weights back from checkpoint files: always `weights_only=True` (no pickle), errors name the key."""
from __future__ import annotations

from pathlib import Path

import torch


def load_checkpoint(path: str | Path, key: str, mmap: bool = False) -> dict:
    """The whole checkpoint dictionary at `path`, the value of config key `key`; `mmap`: tensors read lazily
    from the file (enough to compare names and shapes without reading a large checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated, not a checkpoint, or holding objects beyond tensors and plain values
        raise UnreadableCheckpoint(unreadable_message(path, key, e)) from e
    if not isinstance(checkpoint, dict):
        held = TypeError(f"it holds a {type(checkpoint).__name__}")
        raise UnreadableCheckpoint(unreadable_message(path, key, held))
    return checkpoint


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that torch cannot read with weights_only=True."""


def unreadable_message(path: Path, key: str, error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    way_out = ("delete it and run again to start this run over, or run with ckpt_path=null"
               if key == "ckpt_path" else f"point {key} at a checkpoint that a stage of this project wrote")
    return (f"{key}={str(path)!r} cannot be read as a checkpoint ({type(error).__name__}: {first}): it is "
            f"truncated or damaged (e.g. a copy or a job cut short), or not a checkpoint of this project; "
            f"{way_out}.")


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


def saved_backbone(path: str | Path) -> str | None:
    """The `backbone.name` a stage checkpoint was trained with (its saved config), None if not recorded."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # only asked while reporting another error: never hide that one
        return None
    cfg = (ckpt.get("hyper_parameters") or {}).get("cfg") or {} if isinstance(ckpt, dict) else {}
    return (cfg.get("backbone") or {}).get("name")


def load_matching(module: torch.nn.Module, state: dict, path: str | Path, key: str, backbone: str) -> None:
    """`module.load_state_dict(state)`, or when the tensors do not fit (another backbone or architecture), a
    short error naming the file, the backbone it was saved with and the configured one (not a state-dict dump)."""
    check_fits(module, state, path, key, backbone)
    module.load_state_dict(state)


def check_fits(module: torch.nn.Module, state: dict, path: str | Path, key: str, backbone: str) -> None:
    """Nothing when `state` has exactly `module`'s tensors and shapes; otherwise the short ValueError of
    :func:`load_matching`."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or reshaped):
        return
    saved = saved_backbone(path)
    origin = f"saved with backbone {saved!r}" if saved else "its backbone is not recorded"
    example = (f"e.g. {reshaped[0]} is {tuple(state[reshaped[0]].shape)} there but {tuple(own[reshaped[0]].shape)} "
               "here" if reshaped else f"e.g. missing {missing[:2]}, unexpected {unexpected[:2]}")
    hint = f"run with backbone={saved}" if saved and saved != backbone else "use a checkpoint of this stage and backbone"
    raise ValueError(f"{key}={str(path)!r} does not fit the configured model (backbone={backbone}): {origin}; "
                     f"{len(missing)} tensors missing, {len(unexpected)} unexpected, {len(reshaped)} of another "
                     f"shape ({example}). {hint[0].upper()}{hint[1:]}.")
