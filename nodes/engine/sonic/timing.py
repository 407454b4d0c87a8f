"""Optional per-stage wall-clock timing of a generate() call (for benchmarks).

Stages nest: time spent in an inner stage is not counted in the outer one, so
a streamed pipeline (decode feeding RIFE feeding conversion) still gives one
honest number per stage. With CUDA the device is synchronised at stage edges,
which costs a little: timing is off unless a benchmark asks for it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch


class StageTimes:
    """Exclusive seconds per stage name."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._cuda = device is not None and device.type == "cuda"
        self._stack: list[list[float]] = []  # [start, time spent in children]

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        self._stack.append([time.perf_counter(), 0.0])
        try:
            yield
        finally:
            self._sync()
            start, children = self._stack.pop()
            total = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + total - children
            if self._stack:
                self._stack[-1][1] += total

    def iterate(self, items, name: str):
        """Yield from an iterator, timing each `next()` under `name`."""
        iterator = iter(items)
        while True:
            with self.stage(name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item


class NoTimes(StageTimes):
    """The default: no synchronisation, no bookkeeping."""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield

    def iterate(self, items, name: str):
        return iter(items)
