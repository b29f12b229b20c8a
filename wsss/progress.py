"""Progress bars on loops over images or pools that can take more than a few seconds (threshold sweeps, CRF
pools, the random walk, evaluations): shown on a terminal, off in logs that are not one (files, CI, SLURM)."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def shown(stream=None) -> bool:
    """A bar on a terminal only; WSSS_PROGRESS=0/1 forces it off/on, CI=true turns it off."""
    forced = os.environ.get("WSSS_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """`items` with a tqdm bar named `desc` where one is shown (see `shown`), else `items` as they are."""
    if not shown():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)
