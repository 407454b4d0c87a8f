"""Joining sentence clips into one track without clicks.

A clip that starts or ends away from zero (most services cut at a sample boundary, not at
a zero crossing) clicks when butted against the next one. Each joint is cut at the nearest
zero crossing within a few milliseconds and the two clips overlap by a short equal-power
crossfade, so the waveform stays continuous while no speech is shortened noticeably.
"""

from __future__ import annotations

import numpy as np

from ..audio_input import resample
from ..types import Audio

CROSSFADE_S = 0.010
SEARCH_S = 0.004  # how far a cut may move to reach a zero crossing


def to_rate(audio: Audio, rate: int) -> np.ndarray:
    """Mono float32 at ``rate``."""
    mono = audio.samples.mean(axis=0) if audio.samples.shape[0] > 1 else audio.samples[0]
    return resample(mono.astype(np.float32, copy=False), audio.sample_rate, rate)


def _zero_crossing(x: np.ndarray, index: int, radius: int) -> int:
    """The sample nearest ``index`` (within ``radius``) where the signal crosses zero."""
    lo, hi = max(1, index - radius), min(len(x) - 1, index + radius)
    if hi <= lo:
        return index
    window = x[lo - 1 : hi]
    crossings = np.nonzero(np.signbit(window[:-1]) != np.signbit(window[1:]))[0] + lo
    if crossings.size == 0:
        return index
    return int(crossings[np.argmin(np.abs(crossings - index))])


def join(clips: list[Audio], pause_s: float = 0.0) -> Audio:
    """One mono track: clips in order at the first clip's rate, crossfaded, ``pause_s`` between them.

    Linear in the total length: each joint only touches a few milliseconds on either side, and
    the pieces are concatenated once at the end (a 10-minute text has hundreds of joints).
    """
    if not clips:
        raise ValueError("join: no clips")
    rate = clips[0].sample_rate
    parts = [to_rate(c, rate) for c in clips]
    fade = max(1, int(CROSSFADE_S * rate))
    radius = int(SEARCH_S * rate)
    pause = np.zeros(int(round(pause_s * rate)), np.float32)
    pieces: list[np.ndarray] = []
    current = _fade_edges(parts[0], fade, start=True, end=len(parts) == 1)
    for i, nxt in enumerate(parts[1:], 1):
        nxt = _fade_edges(nxt, fade, start=False, end=i == len(parts) - 1)
        if pause.size:
            pieces += [_fade_out(current, fade), pause]
            current = _fade_in(nxt, fade)
        else:
            head, overlap, current = _crossfade(current, nxt, fade, radius)
            pieces += [head, overlap]
    pieces.append(current)
    out = np.concatenate(pieces)
    return Audio(samples=out[None, :].astype(np.float32, copy=False), sample_rate=rate)


def _crossfade(a: np.ndarray, b: np.ndarray, fade: int, radius: int) -> tuple[np.ndarray, ...]:
    """(a before the overlap, the overlap, b after it): an equal-power fade between zero crossings."""
    n = min(fade, len(a), len(b))
    if n < 2:
        return a, np.zeros(0, np.float32), b
    cut_a = _zero_crossing(a, len(a) - n, radius)  # the overlap starts at a zero crossing of a...
    n = min(n, len(a) - cut_a)
    start_b = _zero_crossing(b, 0, radius) if len(b) > n + radius else 0  # ...and of b
    b = b[start_b:]
    n = min(n, len(b))
    t = np.linspace(0.0, np.pi / 2, n, dtype=np.float32)
    overlap = a[cut_a : cut_a + n] * np.cos(t) + b[:n] * np.sin(t)
    return a[:cut_a], overlap, b[n:]  # what is left of a past the overlap is < 4 ms


def _fade_in(x: np.ndarray, n: int) -> np.ndarray:
    n = min(n, len(x))
    x = x.copy()
    x[:n] *= np.sin(np.linspace(0.0, np.pi / 2, n, dtype=np.float32)) ** 2
    return x


def _fade_out(x: np.ndarray, n: int) -> np.ndarray:
    n = min(n, len(x))
    x = x.copy()
    if n:
        x[-n:] *= np.cos(np.linspace(0.0, np.pi / 2, n, dtype=np.float32)) ** 2
    return x


def _fade_edges(x: np.ndarray, n: int, start: bool, end: bool) -> np.ndarray:
    """The track's very start and end go to zero too (no click when the clip starts playing)."""
    if start:
        x = _fade_in(x, n)
    if end:
        x = _fade_out(x, n)
    return x
