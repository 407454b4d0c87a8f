"""The real length of an audio file, so a job's duration matches its speech.

A Sonic clip must be exactly as long as its audio: a manifest duration that
disagrees is corrected from this probe (and noted). PyAV is imported inside the
function so the runner's CLI starts without it.
"""

from __future__ import annotations

import wave
from pathlib import Path

# Containers whose header duration ffmpeg only estimates from the bitrate (raw ADTS AAC,
# raw AMR, ...): their length is measured by decoding instead.
_ESTIMATED_FORMATS = {"aac", "adts", "amr", "amrnb", "amrwb"}


class ProbeError(ValueError):
    """An audio file that cannot be read (one line: the file and what to do)."""


def audio_duration(path: str | Path, exact: bool = False) -> float:
    """Seconds of audio in the file's first audio stream.

    A PCM WAV file is read with the standard library: its header is exact, and opening
    it with FFmpeg costs ~8 ms of CPU (format and stream probing), most of an API
    submission's. Anything else uses the stream or container duration when the header
    has one; decodes the stream and counts samples when it has none, when the format's
    header is a bitrate estimate, or when `exact` is asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"audio {path}: file not found; check the path in the manifest")
    seconds = _pcm_wav_seconds(path)
    if seconds is not None:
        return seconds
    import av  # lazily: PyAV is heavy and only batches with audio need it

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ProbeError(
                    f"audio {path}: the file has no audio stream; give a speech clip (wav, mp3, m4a, ...)"
                )
            stream = container.streams.audio[0]
            formats = set((container.format.name or "").split(","))
            if not exact and not formats & _ESTIMATED_FORMATS:
                seconds = _header_seconds(container, stream)
                if seconds is not None:
                    return seconds
            return _decoded_seconds(container, stream, path)
    except ProbeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProbeError(f"audio {path}: cannot be decoded ({detail}); give a valid audio file") from None


def _pcm_wav_seconds(path: Path) -> float | None:
    """Seconds of a complete PCM WAV file (exact: a count of samples), or None for any other
    file, a WAV in another encoding, an empty one, or one cut short of what its header
    declares (FFmpeg then decodes what is there and says what is wrong)."""
    try:
        with wave.open(str(path), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
            if frames <= 0 or rate <= 0:
                return None
            wav.setpos(frames - 1)
            if len(wav.readframes(1)) != wav.getsampwidth() * wav.getnchannels():
                return None  # truncated: the last frame the header promises is missing
    except (wave.Error, EOFError, OSError, ValueError):
        return None
    return frames / rate


def _header_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _decoded_seconds(container, stream, path: Path) -> float:
    samples = 0
    rate = None
    for frame in container.decode(stream):
        samples += frame.samples
        rate = rate or frame.sample_rate
    if not samples or not rate:
        raise ProbeError(f"audio {path}: no audio samples could be decoded; give a non-empty audio file")
    return samples / rate
