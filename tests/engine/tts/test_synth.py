"""The whole text -> speech sequence: order, the host-wide cache, the clip-length limit."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.tts import SpeechRequest, synthesize
from comfyui_sonic.nodes.engine.tts.cache import SpeechCache, cache_key
from comfyui_sonic.nodes.engine.types import Audio


class ToneBackend:
    """A backend whose 'speech' is a tone 0.05 s per character; counts what it was asked to say."""

    name = "tone"

    def __init__(self) -> None:
        self.said: list[str] = []
        self._lock = threading.Lock()

    def identity(self) -> dict:
        return {"backend": self.name}

    def check(self, text: str, voice: str, input_name: str = "voice") -> None:
        return None

    def synthesize(self, text, voice, speed, emotion="", intensity=0.0) -> Audio:
        with self._lock:
            self.said.append(text)
        n = int(0.05 * len(text) / speed * 16_000)
        t = np.arange(n) / 16_000
        return Audio(samples=(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)[None], sample_rate=16_000)


def test_the_same_sentence_is_synthesised_once_per_host():
    backend, cache = ToneBackend(), SpeechCache(10**8)
    first = synthesize(SpeechRequest("Welcome! Your order has shipped.", "a"), backend, cache=cache)
    again = synthesize(SpeechRequest("Welcome! Your parcel is late.", "a"), backend, cache=cache)
    assert backend.said == ["Welcome!", "Your order has shipped.", "Your parcel is late."]
    assert (first.cached, again.cached) == (0, 1)


@pytest.mark.parametrize(
    "other",
    [
        SpeechRequest("Welcome!", "b"),
        SpeechRequest("Welcome!", "a", speed=1.2),
        SpeechRequest("Welcome!", "a", emotion="happy"),
    ],
)
def test_another_voice_speed_or_emotion_is_synthesised_again(other):
    backend, cache = ToneBackend(), SpeechCache(10**8)
    synthesize(SpeechRequest("Welcome!", "a"), backend, cache=cache)
    synthesize(other, backend, cache=cache)
    assert len(backend.said) == 2


def test_the_backend_is_part_of_the_key():
    settings = SpeechRequest("x", "a").settings()
    assert cache_key("Hi.", "a", settings, {"backend": "espeak-ng"}) != cache_key(
        "Hi.", "a", settings, {"backend": "http", "url": "http://tts"}
    )


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    clip = Audio(samples=np.zeros((1, 1000), np.float32), sample_rate=16_000)  # 4000 bytes
    cache = SpeechCache(max_bytes=10_000)
    for key in ("a", "b"):
        cache.put(key, clip)
    cache.get("a")
    cache.put("c", clip)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size_bytes <= 10_000 and len(cache) == 2


def test_cached_audio_cannot_be_changed_by_a_later_job():
    backend, cache = ToneBackend(), SpeechCache(10**8)
    synthesize(SpeechRequest("Hello there.", "a"), backend, cache=cache)
    hit = cache.get(cache_key("Hello there.", "a", SpeechRequest("", "a").settings(), backend.identity()))
    with pytest.raises(ValueError):
        hit.samples[0, 0] = 1.0


def test_a_text_whose_speech_outlasts_the_clip_limit_stops_early_with_the_limit():
    backend = ToneBackend()
    text = " ".join(f"This is sentence number {i} of a long script." for i in range(200))
    with pytest.raises(SonicInputError) as err:
        synthesize(SpeechRequest(text, "a"), backend, cache=SpeechCache(0), max_seconds=10.0, concurrency=4)
    assert str(err.value).startswith("text: the speech is longer than the 10 s a clip may last")
    assert len(backend.said) < 15  # stopped, not 200 sentences synthesised


def test_concurrency_keeps_the_order():
    backend = ToneBackend()
    text = " ".join(f"Sentence {'a' * i}." for i in range(1, 12))
    one = synthesize(SpeechRequest(text, "a"), ToneBackend(), cache=SpeechCache(0))
    many = synthesize(SpeechRequest(text, "a"), backend, cache=SpeechCache(0), concurrency=6)
    assert np.array_equal(one.audio.samples, many.audio.samples)


def test_emotion_on_a_backend_without_emotions_is_noted():
    speech = synthesize(SpeechRequest("Hi.", "a", emotion="happy"), ToneBackend(), cache=SpeechCache(0))
    assert speech.notes == ["emotion 'happy' is ignored by tone (it has no emotion control)"]
