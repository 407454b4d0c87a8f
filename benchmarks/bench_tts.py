"""Text-to-speech costs: espeak-ng per second of speech, a cache hit, and sentences in parallel.

Prints what it measured (wall-clock on this machine; a shared CPU inflates the times, so read
the ratios within one run):
- espeak-ng: seconds of synthesis per second of speech (real-time factor) for a 10-sentence text;
- the same text again: all sentences from the cache (the ratio to the first run);
- the http backend against the loopback fake service answering each sentence after 0.2 s:
  concurrency 1 vs 4 (the speed-up ratio; ideal is 4).

    python benchmarks/bench_tts.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import conftest  # noqa: E402,F401  (the pack importable as comfyui_sonic from a checkout)
from comfyui_sonic.nodes.engine.tts import EspeakBackend, HttpBackend, HttpOptions, SpeechRequest, synthesize  # noqa: E402
from comfyui_sonic.nodes.engine.tts.cache import SpeechCache  # noqa: E402

from tests.engine.tts.fake_tts import FakeTTS  # noqa: E402

TEXT = " ".join(
    f"This is sentence number {i}, read aloud for the benchmark of the speech node." for i in range(1, 11)
)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> int:
    cache = SpeechCache(10**9)
    espeak = EspeakBackend()
    speech, first = timed(lambda: synthesize(SpeechRequest(TEXT, "en-us"), espeak, cache=cache))
    again, second = timed(lambda: synthesize(SpeechRequest(TEXT, "en-us"), espeak, cache=cache))
    seconds = speech.audio.duration
    print(
        f"espeak-ng: {seconds:.1f} s of speech ({speech.sentences} sentences) in {first:.2f} s "
        f"= {first / seconds:.3f} s per second of speech ({seconds / first:.0f}x real time)"
    )
    print(
        f"cache: the same text again in {second * 1000:.1f} ms, {again.cached}/{again.sentences} from the "
        f"cache ({first / max(second, 1e-9):.0f}x faster)"
    )
    with FakeTTS(slow_s=0.2) as tts:
        backend = HttpBackend(tts.url("/slow"), "openai", HttpOptions(timeout=10))
        request = SpeechRequest(TEXT, "nova")
        _, one = timed(lambda: synthesize(request, backend, cache=SpeechCache(0), concurrency=1))
        _, four = timed(lambda: synthesize(request, backend, cache=SpeechCache(0), concurrency=4))
    print(
        f"http, 0.2 s per sentence: concurrency 1 {one:.2f} s, concurrency 4 {four:.2f} s "
        f"({one / four:.1f}x faster; ideal 4x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
