"""A sweep's record (`sweep.json`: its id, group, swept keys, objective) and the short spellings of the swept
keys and values that name its jobs, read by the sweep callback, its job folders and its summary."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wsss.artifacts import atomic_write_text

RECORD = "sweep.json"
ERROR = "error.txt"


@dataclass
class SweepRecord:
    id: str                     # hash of the command (wsss.sweep_dirs): the same command is the same sweep
    group: str                  # the W&B group of every job
    swept: list[str]            # keys given several values, in command-line order
    command: list[str] = field(default_factory=list)
    objective: str | None = None
    direction: str = "maximize"
    started: float = 0.0

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sweep_dir / RECORD, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepRecord | None:
        path = Path(sweep_dir) / RECORD
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))


def override_key(override: str) -> str:
    """`+stage.lr=0.1` -> `stage.lr`."""
    return override.split("=", 1)[0].lstrip("+~")


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest ending that no other key shares: stage.lr -> lr, stage.oc.lr -> oc.lr."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(other != key and (other == tail or other.endswith("." + tail)) for other in keys):
                break
        out[key] = tail
    return out


def short_value(value: str) -> str:
    """Optuna's floats (0.012345678901) to 4 significant digits; everything else as written."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if "." in value and len(value) > 7 else value
