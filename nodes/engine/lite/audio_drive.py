"""What the mouth does, frame by frame, from the speech signal alone.

The lite backend has no learned audio model, so it reads two things a viewer
actually sees in speech: how loud the voice is (the jaw opens with the
syllable's energy and shuts in pauses and on p/b/m) and where the energy sits
in the spectrum (a strong high second formant means spread lips, "ee";
energy all below ~550 Hz means rounded lips, "oo"; hiss means teeth). Features are taken at
100 Hz, smoothed with a zero-phase filter (so the mouth neither leads nor lags
the sound) and read at the centre of each video frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

SAMPLE_RATE = 16000
HOP = 160  # 10 ms
N_FFT = 512  # 32 ms window
_BLOCK = 4096  # STFT rows per block: bounds memory on long clips

# Bands (Hz). Within the vowel band, a closed vowel has its first formant in LOW; spread
# vowels ("ee", "e") add a second formant in FRONT; open vowels ("a") sit in between.
_VOWEL = (200.0, 3200.0)
_LOW = (200.0, 550.0)
_FRONT = (1900.0, 3200.0)
_HIGH = (3500.0, 7800.0)  # frication ("s", "f")
_SPEECH = (90.0, 5000.0)

_GATE_DBFS = -58.0  # quieter than this is silence, however the clip is normalised
_CLOSED_BELOW_REF_DB = 30.0  # this far under the clip's loud level the mouth is shut
_OPEN_RANGE_DB = 30.0  # and fully open at that loud level (only peaks reach it)


@dataclass(frozen=True)
class MouthTrack:
    """Per video frame: how open, how wide/rounded, and how emphatic the speech is."""

    open: np.ndarray  # [N] 0..1 jaw/lip opening
    wide: np.ndarray  # [N] -1..1: + spread lips ("ee", "s"), - rounded ("oo", "o")
    emphasis: np.ndarray  # [N] 0..1 slow loudness (drives nods and brows)


def band_powers(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """Mean-square power per 10 ms hop in the speech bands (dict of [T] float64).

    The STFT runs in blocks so a ten-minute clip never holds its whole spectrogram.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    hop = max(1, round(sample_rate * HOP / SAMPLE_RATE))
    n_fft = max(64, round(sample_rate * N_FFT / SAMPLE_RATE))
    pad = n_fft // 2
    padded = np.pad(x, (pad, pad))
    n_rows = 1 + (len(padded) - n_fft) // hop if len(padded) >= n_fft else 0
    window = np.hanning(n_fft).astype(np.float32)
    norm = float(np.sum(window**2) * n_fft / 2.0)  # -> mean-square units (a full-scale sine ~ 0.5)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    bands = {"vowel": _VOWEL, "low": _LOW, "front": _FRONT, "high": _HIGH, "speech": _SPEECH}
    masks = {k: (freqs >= lo) & (freqs < hi) for k, (lo, hi) in bands.items()}
    out = {k: np.zeros(n_rows, dtype=np.float64) for k in bands}
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    for start in range(0, n_rows, _BLOCK):
        block = frames[start : start + _BLOCK] * window
        power = np.abs(np.fft.rfft(block, axis=1)) ** 2 / norm
        for k, m in masks.items():
            out[k][start : start + len(block)] = power[:, m].sum(axis=1)
    return out


def loudness_db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def opening_from_db(db: np.ndarray) -> np.ndarray:
    """Map loudness (dBFS per hop) to 0..1 opening relative to the clip's own loud level."""
    voiced = db[db > _GATE_DBFS]
    ref = float(np.percentile(voiced, 95)) if voiced.size else _GATE_DBFS
    floor = max(ref - _CLOSED_BELOW_REF_DB, _GATE_DBFS)
    return np.clip((db - floor) / _OPEN_RANGE_DB, 0.0, 1.0)


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Centre of each frame's display interval, seconds (the instant a frame shows)."""
    return (np.arange(n_frames, dtype=np.float64) + 0.5) / float(fps)


def _at_frames(series: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    t_hop = np.arange(len(series), dtype=np.float64) * (HOP / SAMPLE_RATE)
    if len(series) == 0:
        return np.zeros(n_frames)
    return np.interp(frame_times(n_frames, fps), t_hop, series)


def mouth_track(audio_16k: np.ndarray, fps: float, n_frames: int) -> MouthTrack:
    """Opening, width and emphasis for `n_frames` video frames of 16 kHz mono speech."""
    p = band_powers(audio_16k, SAMPLE_RATE)
    # A frame shows 40 ms (at 25 fps): smooth over about that so the mouth does not chatter.
    sigma = max(1.0, 0.4 * 100.0 / fps)
    open_ = opening_from_db(loudness_db(p["speech"]))
    open_ = gaussian_filter1d(open_, sigma, mode="nearest") ** 1.4

    speech = p["speech"] + 1e-12
    vowel = p["vowel"] + 1e-12
    spread = np.clip((p["front"] / vowel - 0.08) / 0.12, 0.0, 1.0)  # "ee": F2 high
    rounded = np.clip((p["low"] / vowel - 0.45) / 0.25, 0.0, 1.0) * (1.0 - spread)  # "oo": all low
    hiss = np.clip(p["high"] / speech - 0.3, 0.0, 1.0)  # "s": teeth, lips spread a little
    wide = spread - rounded + 0.6 * hiss
    wide = gaussian_filter1d(np.clip(wide, -1.0, 1.0) * np.minimum(1.0, open_ * 3.0), 2.0 * sigma)

    emphasis = gaussian_filter1d(open_, 25.0, mode="nearest")  # ~0.25 s
    emphasis = emphasis / max(1e-6, float(emphasis.max())) if emphasis.size else emphasis

    return MouthTrack(
        open=_at_frames(open_, n_frames, fps).astype(np.float32),
        wide=np.clip(_at_frames(wide, n_frames, fps), -1.0, 1.0).astype(np.float32),
        emphasis=np.clip(_at_frames(emphasis, n_frames, fps), 0.0, 1.0).astype(np.float32),
    )
