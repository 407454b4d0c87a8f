"""A mapping of at most ``maxsize`` entries that forgets the least recently used.

Why: a fleet worker runs for weeks, and its per-input caches (a file's hash, its upload name on the
host, a speech clip's duration) are keyed by each job's own temp files and contents. As plain dicts
they held an entry per job forever: in a 30-minute soak every worker grew ~1.5 kB per job,
steadily. Bounded, a batch that reuses one portrait still hashes and uploads it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_SIZE = 512  # the recent files: a portrait reused by every row stays; ~0.3 MB at most


class LruCache(Generic[K, V]):
    """Thread-safe: the attempts of one worker share its caches."""

    def __init__(self, maxsize: int = DEFAULT_SIZE) -> None:
        if maxsize < 1:
            raise ValueError(f"an LRU cache needs room for at least 1 entry, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
