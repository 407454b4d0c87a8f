"""A bounded in-memory cache of synthesised sentences, shared by every node on this host.

Services built on this pack say the same things again and again (greetings, sign-offs, a
product's name). Synthesising one sentence costs a service call or an espeak-ng run; the
cache makes the second time free. It is keyed by everything that changes the sound (the
sentence, voice, speed, emotion and the backend's identity: program, URL, request shape and
options without secret values) and bounded in bytes, least recently used first out
(SONIC_TTS_CACHE_MB, default 256; 0 turns it off).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict

from ..types import Audio

DEFAULT_CACHE_MB = 256.0


def cache_limit_bytes() -> int:
    raw = os.environ.get("SONIC_TTS_CACHE_MB", "")
    try:
        mb = float(raw) if raw else DEFAULT_CACHE_MB
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return max(0, int(mb * 1024 * 1024))


def cache_key(text: str, voice: str, settings: dict, backend: dict) -> str:
    """A stable digest of (text, voice, settings, backend)."""
    blob = json.dumps([text, voice, settings, backend], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class SpeechCache:
    """LRU of Audio by key, at most ``max_bytes`` of samples; thread-safe."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = cache_limit_bytes() if max_bytes is None else max_bytes
        self._items: OrderedDict[str, Audio] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Audio | None:
        with self._lock:
            audio = self._items.get(key)
            if audio is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return audio

    def put(self, key: str, audio: Audio) -> None:
        size = int(audio.samples.nbytes)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= int(old.samples.nbytes)
            audio.samples.setflags(write=False)  # shared between jobs: nobody may change it
            self._items[key] = audio
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= int(dropped.samples.nbytes)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
