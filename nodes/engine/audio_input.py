"""Speech input: decode any audio file with PyAV, validate it, resample to 16 kHz mono, fit a length.

Limits:
- MIN_DURATION = 0.1 s. Sonic generates frames in pairs at 25 fps (12.5 fps
  generation + one interpolated frame), so a clip needs at least 2 frames
  (0.08 s) to yield anything; below that the official pipeline produces an
  empty video. 0.1 s (2.5 frames) is the shortest clip that gives a real
  result, and is shorter than any spoken syllable, so no real speech is refused.
- MAX_DURATION = 600 s (10 minutes) by default; set SONIC_MAX_AUDIO_SECONDS to
  change it. Past that a single job holds tens of thousands of frames; batch
  work should split the speech instead. Files are checked while decoding, so an
  over-long file stops early instead of being decoded whole.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SonicInputError
from .types import Audio

MIN_DURATION = 0.1
DEFAULT_MAX_DURATION = 600.0
TARGET_RATE = 16_000


def max_duration() -> float:
    """The longest audio accepted, in seconds (SONIC_MAX_AUDIO_SECONDS overrides the default)."""
    raw = os.environ.get("SONIC_MAX_AUDIO_SECONDS", "")
    try:
        value = float(raw) if raw else DEFAULT_MAX_DURATION
    except ValueError:
        value = DEFAULT_MAX_DURATION
    return value if math.isfinite(value) and value > 0 else DEFAULT_MAX_DURATION


def _too_long(input_name: str, seconds: float, limit: float) -> SonicInputError:
    return SonicInputError(
        input_name,
        f"the audio is too long ({seconds:.1f} s; the maximum is {limit:.0f} s)",
        "split the speech into shorter clips (or raise SONIC_MAX_AUDIO_SECONDS)",
    )


def check_audio(audio: Audio, input_name: str = "audio", limit: float | None = None) -> None:
    """Raise SonicInputError unless `audio` is usable speech input."""
    limit = max_duration() if limit is None else limit
    samples = audio.samples
    if samples.ndim != 2 or samples.shape[0] < 1:
        raise SonicInputError(
            input_name,
            f"expected audio samples [channels, n], got shape {list(samples.shape)}",
            "connect a Load Audio node",
        )
    if samples.shape[1] == 0:
        raise SonicInputError(
            input_name, "the audio is empty (0 samples)", "use a speech clip of at least 0.1 s"
        )
    if not (isinstance(audio.sample_rate, int | np.integer) and 1000 <= audio.sample_rate <= 384_000):
        raise SonicInputError(
            input_name,
            f"unusable sample rate {audio.sample_rate!r}",
            "use audio sampled at 8-192 kHz (e.g. 16 or 44.1 kHz)",
        )
    seconds = audio.duration
    if seconds < MIN_DURATION:
        raise SonicInputError(
            input_name,
            f"the audio is too short ({seconds:.3f} s; the minimum is {MIN_DURATION} s)",
            "use a speech clip of at least 0.1 s",
        )
    if seconds > limit:
        raise _too_long(input_name, seconds, limit)


def load_audio(path: str | Path, input_name: str = "audio", limit: float | None = None) -> Audio:
    """Decode the first audio stream of any file FFmpeg reads (WAV, MP3, FLAC, M4A, OGG, video files...)."""
    import av

    path = Path(path)
    limit = max_duration() if limit is None else limit
    if not path.is_file():
        raise SonicInputError(
            input_name, f"file not found: {path}", "give the path of an existing audio file"
        )
    if path.stat().st_size == 0:
        raise SonicInputError(
            input_name, f"{path.name} is empty (0 bytes)", "use a WAV, MP3, FLAC or M4A speech clip"
        )
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise _undecodable(input_name, path, exc) from None
    with container:
        if not container.streams.audio:
            raise SonicInputError(
                input_name, f"{path.name} contains no audio stream", "use a file with speech audio in it"
            )
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
            if declared > limit + 1.0:
                raise _too_long(input_name, declared, limit)
        try:
            samples, rate = _decode(container, stream, input_name, limit)
        except (av.error.FFmpegError, ValueError) as exc:
            raise _undecodable(input_name, path, exc) from None
    audio = Audio(samples=samples, sample_rate=rate)
    if samples.shape[1] == 0:
        raise SonicInputError(
            input_name, f"{path.name} decodes to no samples", "use a speech clip of at least 0.1 s"
        )
    check_audio(audio, input_name, limit)
    return audio


def _undecodable(input_name: str, path: Path, exc: Exception) -> SonicInputError:
    detail = getattr(exc, "strerror", None) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return SonicInputError(
        input_name, f"cannot decode {path.name} ({detail})", "use a WAV, MP3, FLAC or M4A speech clip"
    )


def _decode(container: Any, stream: Any, input_name: str, limit: float) -> tuple[np.ndarray, int]:
    """Decode to float32 [channels, n], stopping as soon as the limit is passed."""
    import av

    resampler = None
    chunks: list[np.ndarray] = []
    total = 0
    rate = 0
    for frame in container.decode(stream):
        if resampler is None:
            rate = int(frame.sample_rate)
            resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
        for out in resampler.resample(frame):
            arr = out.to_ndarray().astype(np.float32, copy=False)
            chunks.append(arr)
            total += arr.shape[1]
        if rate and total / rate > limit + 1.0:
            raise _too_long(input_name, total / rate, limit)
    if resampler is not None:
        for out in resampler.resample(None):
            arr = out.to_ndarray().astype(np.float32, copy=False)
            chunks.append(arr)
    if not chunks:
        return np.zeros((1, 0), np.float32), rate or TARGET_RATE
    samples = np.concatenate(chunks, axis=1)
    return _clean(samples), rate


def _clean(samples: np.ndarray) -> np.ndarray:
    """NaN/inf become silence; everything is clipped to [-1, 1]."""
    samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def audio_from_comfy(audio: Any, input_name: str = "audio", *, validate: bool = True) -> Audio:
    """ComfyUI AUDIO dict {"waveform": [B, C, T], "sample_rate": int} -> Audio (first batch item).

    validate=False skips the speech-length limits (for muxing audio that is
    fitted to a video anyway); the shape and sample rate are still checked.
    """
    if not isinstance(audio, dict) or "waveform" not in audio:
        raise SonicInputError(
            input_name,
            f"expected an AUDIO value (dict with 'waveform' and 'sample_rate'), got {type(audio).__name__}",
            "connect a Load Audio node",
        )
    rate = audio.get("sample_rate", audio.get("sampler_rate"))
    wave = audio["waveform"]
    if hasattr(wave, "detach"):
        wave = wave.detach().cpu()
        wave = (wave if str(wave.dtype) == "torch.float32" else wave.float()).numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None, None]
    elif wave.ndim == 2:
        wave = wave[None]
    if wave.ndim != 3 or wave.shape[0] < 1 or wave.shape[1] < 1:
        raise SonicInputError(
            input_name,
            f"expected a waveform of shape [B, C, T], got {list(wave.shape)}",
            "connect a Load Audio node",
        )
    try:
        rate_int = int(rate)
    except (TypeError, ValueError):
        rate_int = -1
    raw = Audio(samples=wave[0], sample_rate=rate_int)
    if validate:
        check_audio(raw, input_name)  # on the shape only: nothing is copied before the checks pass
    elif not 1000 <= rate_int <= 384_000:
        raise SonicInputError(input_name, f"unusable sample rate {rate!r}", "connect a Load Audio node")
    return Audio(samples=_clean(raw.samples), sample_rate=rate_int)


def to_mono(audio: Audio) -> np.ndarray:
    return audio.samples.mean(axis=0, dtype=np.float32) if audio.samples.shape[0] > 1 else audio.samples[0]


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """High-quality resampling (soxr, what librosa uses by default)."""
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def to_16k_mono(audio: Audio) -> np.ndarray:
    """Mono float32 [n] at 16 kHz, n = round(duration * 16000) exactly (the rate whisper expects)."""
    mono = resample(to_mono(audio), audio.sample_rate, TARGET_RATE)
    return _exact_length(mono, round(audio.duration * TARGET_RATE))


def _exact_length(samples: np.ndarray, n: int) -> np.ndarray:
    if samples.shape[-1] >= n:
        return np.ascontiguousarray(samples[..., :n])
    pad = [(0, 0)] * (samples.ndim - 1) + [(0, n - samples.shape[-1])]
    return np.pad(samples, pad)


def fit_length(audio: Audio, seconds: float) -> Audio:
    """Trim `audio` to `seconds`, or pad it with silence at the end."""
    n = round(seconds * audio.sample_rate)
    if n == audio.samples.shape[1]:
        return audio
    return Audio(
        samples=_exact_length(audio.samples, n).astype(np.float32, copy=False), sample_rate=audio.sample_rate
    )
