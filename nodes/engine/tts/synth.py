"""Text -> one speech track: clean, check, split, synthesise in order (a few at once), join.

The pieces are small and separate (text.py, espeak.py, http.py, join.py, cache.py); this
module is the sequence, like a pipeline's named steps:

    clean_text -> backend.check (voice, script) -> split_sentences
      -> for each sentence: cache or backend.synthesize (``concurrency`` at a time, results kept in order)
      -> stop once the speech passes the clip limit -> join (crossfades) -> Speech

Why the limit is checked while synthesising: a 100,000-character text is refused by the
character limit at once, but a text under it can still speak for longer than a clip may
last; synthesis stops at the first sentence past the limit instead of finishing an hour of
audio that would be refused anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ..audio_input import max_duration
from ..errors import SonicInputError
from ..types import Audio
from .cache import SpeechCache, cache_key
from .join import join
from .text import clean_text, split_sentences

MAX_CONCURRENCY = 8


class Backend(Protocol):
    name: str

    def identity(self) -> dict: ...

    def check(self, text: str, voice: str, input_name: str = "voice") -> None: ...

    def synthesize(
        self, text: str, voice: str, speed: float, emotion: str = "", intensity: float = 0.0
    ) -> Audio: ...


@dataclass(frozen=True)
class SpeechRequest:
    """What to say and how (the node's inputs, as plain data)."""

    text: str
    voice: str
    speed: float = 1.0
    emotion: str = ""
    emotion_intensity: float = 0.0
    pause_s: float = 0.0  # extra silence between sentences (services usually leave some already)

    def settings(self) -> dict:
        return {
            "speed": round(float(self.speed), 4),
            "emotion": self.emotion,
            "emotion_intensity": round(float(self.emotion_intensity), 4) if self.emotion else 0.0,
        }


@dataclass
class Speech:
    """The synthesised track and what happened on the way (shown on the node)."""

    audio: Audio
    sentences: int
    cached: int
    notes: list[str] = field(default_factory=list)


_DEFAULT_CACHE: SpeechCache | None = None


def default_cache() -> SpeechCache:
    """The host-wide cache (made on first use, so SONIC_TTS_CACHE_MB is read when it is needed)."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = SpeechCache()
    return _DEFAULT_CACHE


def synthesize(
    request: SpeechRequest,
    backend: Backend,
    *,
    concurrency: int = 1,
    cache: SpeechCache | None = None,
    max_seconds: float | None = None,
    on_sentence: Callable[[int, int], None] | None = None,
) -> Speech:
    """The whole text as one mono track (see the module docstring for the steps)."""
    text, notes = clean_text(request.text)
    backend.check(text, request.voice)
    if not 0.25 <= float(request.speed) <= 4.0:
        raise SonicInputError("speed", f"{request.speed!r} is out of range", "give a value from 0.25 to 4")
    sentences = split_sentences(text)
    cache = default_cache() if cache is None else cache
    limit = max_duration() if max_seconds is None else max_seconds
    identity = backend.identity()
    settings = request.settings()
    if request.emotion and backend.name != "http":
        notes.append(f"emotion {request.emotion!r} is ignored by {backend.name} (it has no emotion control)")

    def one(sentence: str) -> tuple[Audio, bool]:
        key = cache_key(sentence, request.voice, settings, identity)
        hit = cache.get(key)
        if hit is not None:
            return hit, True
        audio = backend.synthesize(
            sentence, request.voice, float(request.speed), request.emotion, request.emotion_intensity
        )
        cache.put(key, audio)
        return audio, False

    clips: list[Audio] = []
    cached = 0
    total = 0.0
    workers = max(1, min(int(concurrency), MAX_CONCURRENCY))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sonic-tts") as pool:
        # At most `workers` sentences ahead of the one being joined: ordered, and a text that
        # passes the limit stops after a few extra calls, not after all of them.
        pending = []
        index = 0
        while index < len(sentences) or pending:
            while index < len(sentences) and len(pending) < workers:
                pending.append(pool.submit(one, sentences[index]))
                index += 1
            audio, hit = pending.pop(0).result()
            clips.append(audio)
            cached += hit
            total += audio.duration + request.pause_s
            if on_sentence is not None:
                on_sentence(len(clips), len(sentences))
            if total > limit:
                for future in pending:
                    future.cancel()
                raise SonicInputError(
                    "text",
                    f"the speech is longer than the {limit:.0f} s a clip may last (passed it at sentence "
                    f"{len(clips)} of {len(sentences)})",
                    "split the text into several jobs (or raise SONIC_MAX_AUDIO_SECONDS)",
                )
    return Speech(audio=join(clips, request.pause_s), sentences=len(sentences), cached=cached, notes=notes)
