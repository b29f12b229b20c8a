"""A bounded, ordered process pool: the one pool behind the CRF and label writers.

`OrderedPool.submit(key, fn, args)` starts `fn(*args)` in a worker and returns the results that had to be
collected to keep at most `window` calls in flight, in submission order; `drain()` yields the rest. With
`processes == 1` calls run inline. Workers are `spawn`ed (safe after CUDA was initialised), so `fn` must be
picklable and should live in a light module (workers import it). A data set of any size streams through
bounded memory while the caller writes finished results.
"""
from __future__ import annotations

import multiprocessing as mp
from collections import deque
from typing import Any, Callable, Iterable, Iterator


class OrderedPool:
    def __init__(self, processes: int = 1, window: int | None = None, context: str = "spawn"):
        if processes < 1:
            raise ValueError(f"processes={processes}; expected >= 1")
        self.window = window or 4 * processes
        self.pool = mp.get_context(context).Pool(processes) if processes > 1 else None
        self.pending: deque = deque()

    def submit(self, key: Any, fn: Callable[..., Any], args: tuple) -> list[tuple[Any, Any]]:
        """Start `fn(*args)`; returns the `(key, result)`s collected to make room (inline: this one)."""
        if self.pool is None:
            return [(key, fn(*args))]
        self.pending.append((key, self.pool.apply_async(fn, args)))
        done = []
        while len(self.pending) >= self.window:
            done.append(self._collect())
        return done

    def _collect(self) -> tuple[Any, Any]:
        key, result = self.pending.popleft()
        return key, result.get()   # re-raises the worker's error

    def drain(self) -> Iterator[tuple[Any, Any]]:
        while self.pending:
            yield self._collect()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None

    def terminate(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None
        self.pending.clear()

    def __enter__(self) -> "OrderedPool":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.terminate()
        self.close()


def pool_imap(fn: Callable[..., Any], items: Iterable[tuple[Any, tuple]], processes: int = 1,
              window: int | None = None, context: str = "spawn") -> Iterator[tuple[Any, Any]]:
    """Yield `(key, fn(*args))` for every `(key, args)` of `items`, in order, at most `window` (default
    4 · processes) loaded and in flight at a time."""
    with OrderedPool(processes, window, context) as pool:
        for key, args in items:
            yield from pool.submit(key, fn, args)
        yield from pool.drain()
