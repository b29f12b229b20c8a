"""Progress on loops over images or pools that can take more than a few seconds (threshold sweeps, CRF pools,
evaluations): a bar on a terminal; elsewhere (log files, CI, SLURM) a plain log line every
`WSSS_PROGRESS_EVERY` seconds (30 by default) and one when the loop ends, for a loop that ran that long."""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0


def shown(stream=None) -> bool:
    """A bar on a terminal only; WSSS_PROGRESS=0/1 forces it off/on, CI=true turns it off."""
    forced = os.environ.get("WSSS_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


def log_every_s() -> float:
    value = os.environ.get("WSSS_PROGRESS_EVERY", LOG_EVERY_S)
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"WSSS_PROGRESS_EVERY={value!r}; expected the seconds between two progress log "
                         "lines") from None


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """`items` with a tqdm bar named `desc` where one is shown (see `shown`), else with log lines."""
    if not shown():
        yield from logged(items, desc, total, log_every_s())
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)


def logged(items: Iterable[T], desc: str, total: int | None, every_s: float) -> Iterator[T]:
    """`items`, logging `desc: done/total (percent), seconds` each time `every_s` seconds have passed since
    the last line, and a last line at the end when any was written."""
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            log.info("%s: %s, %.0f s", desc, count(done, total), now - start)
            last = now
    if last > start:
        log.info("%s: %s done in %.0f s", desc, count(done, total), time.monotonic() - start)


def count(done: int, total: int | None) -> str:
    return f"{done}/{total} ({100 * done / total:.0f} %)" if total else str(done)
