"""The bounded caches a long-running worker keeps per input file."""

from __future__ import annotations

import threading

import pytest
from comfyui_sonic.runner.lru import LruCache


def test_it_forgets_the_least_recently_used_entry_past_its_size():
    cache: LruCache[str, int] = LruCache(maxsize=2)
    cache["portrait"] = 1
    cache["speech-1"] = 2
    assert cache.get("portrait") == 1  # used again: now the most recent
    cache["speech-2"] = 3
    assert "speech-1" not in cache and cache.get("portrait") == 1 and cache.get("speech-2") == 3
    assert len(cache) == 2


def test_a_missing_key_gives_the_default_and_clear_empties_it():
    cache: LruCache[str, int] = LruCache(maxsize=4)
    assert cache.get("x") is None and cache.get("x", 7) == 7
    cache["x"] = 1
    cache.clear()
    assert len(cache) == 0


def test_threads_writing_at_once_never_overfill_it():
    cache: LruCache[int, int] = LruCache(maxsize=64)

    def write(start: int) -> None:
        for i in range(start, start + 5000):
            cache[i] = i
            cache.get(i - 3)

    threads = [threading.Thread(target=write, args=(n * 10_000,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 64


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        LruCache(maxsize=0)
