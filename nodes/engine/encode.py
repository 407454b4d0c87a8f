"""Frames (+ speech) -> MP4, streamed: H.264/H.265 yuv420p, AAC, faststart.

Frames are encoded as they arrive, so a long clip is never held whole in
memory. Audio is interleaved with the video as it goes (up to the time of the
last written frame) and, at close, trimmed or padded with silence to exactly
the video's length. The file is written under a temporary name and renamed on
success, so a failed or interrupted encode never leaves a half file behind
under the final name.

Odd sizes: yuv420p needs even width and height, so one column/row is added by
replicating the edge pixels (nothing of the picture is lost; the file is at
most 1 px larger than the frames).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .audio_input import resample
from .errors import SonicInputError, SonicStorageError
from .types import Audio

CODECS = {"h264": "libx264", "h265": "libx265"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
AAC_BITRATE = 192_000
MAX_FPS = 240.0
BT709 = 1  # FFmpeg's AVCOL_SPC/PRI/TRC_BT709
LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG (16-235), what every player expects from yuv420p


def available_codecs() -> list[str]:
    """Codec choices this PyAV build can encode (h265 only when libx265 is compiled in)."""
    import av

    return [name for name, lib in CODECS.items() if lib in av.codecs_available]


def fps_fraction(fps: float) -> Fraction:
    """A float fps as an exact rational (29.97002997 -> 30000/1001, 25.0 -> 25)."""
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Streaming MP4 writer; use as a context manager, call write() per chunk, close() returns the path."""

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        crf: int = 19,
        preset: str = "medium",
        codec: str = "h264",
        audio: Audio | None = None,
    ) -> None:
        _check_settings(width, height, fps, crf, preset, codec)
        import av

        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.rate = fps_fraction(float(fps))
        self.frames_written = 0
        self._reformatter = None
        self._closed = False
        self._tmp = self.path.with_name(self.path.name + ".partial")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(
                str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"}
            )
        except OSError as exc:
            raise SonicStorageError(
                str(self.path.parent),
                f"cannot write {self.path.name} there ({exc.strerror or exc})",
                "make the output folder writable or choose another one",
            ) from exc
        try:
            self._video = self._add_video_stream(codec, crf, preset)
            self._audio_src, self._audio = self._add_audio_stream(audio)
        except Exception:
            self._abort()
            raise
        self._audio_pos = 0  # samples of audio already sent to the encoder

    # -- set-up ---------------------------------------------------------------------------------------

    def _add_video_stream(self, codec: str, crf: int, preset: str) -> Any:
        stream = self._container.add_stream(CODECS[codec], rate=self.rate)
        stream.width = self.width + (self.width % 2)
        stream.height = self.height + (self.height % 2)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self.rate
        # Tagged BT.709 (limited range), and converted with that matrix: untagged video is read as
        # BT.601 by some players and BT.709 by others, which shifts skin tones one way or the other.
        cc = stream.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = BT709
        cc.color_range = LIMITED_RANGE
        options = {"crf": str(int(crf)), "preset": preset}
        if codec == "h265":
            options["x265-params"] = "log-level=error"
            stream.codec_tag = "hvc1"  # what Apple players require for HEVC in MP4
        stream.options = options
        return stream

    def _add_audio_stream(self, audio: Audio | None) -> tuple[np.ndarray | None, Any]:
        if audio is None:
            return None, None
        samples, rate = _audio_for_aac(audio)
        layout = "mono" if samples.shape[0] == 1 else "stereo"
        stream = self._container.add_stream("aac", rate=rate)
        stream.layout = layout
        stream.bit_rate = AAC_BITRATE
        return samples, stream

    # -- writing --------------------------------------------------------------------------------------

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    def write(self, frames: np.ndarray) -> None:
        """Encode a chunk of frames: uint8 [n, H, W, 3] (or one [H, W, 3]; float 0..1 is converted)."""
        self.write_converted(self.convert(frames))

    def convert(self, frames: np.ndarray) -> list[Any]:
        """RGB -> BT.709 yuv420p frames, the one colour conversion each frame gets.

        Separate from write_converted() so it can run on another thread (swscale releases the
        GIL): encode_source() converts the next chunk while x264 encodes this one.
        """
        import av

        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            # one converter for the whole clip: a frame's own reformat() sets up swscale every time
            self._reformatter = VideoReformatter()
        out = []
        for frame in self._as_chunk(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf = self._reformatter.reformat(vf, format="yuv420p", dst_colorspace="ITU709")
            vf.colorspace, vf.color_range = BT709, LIMITED_RANGE
            out.append(vf)
        return out

    def write_converted(self, frames: list[Any]) -> None:
        """Encode frames from convert() (already yuv420p: the encoder converts nothing)."""
        if self._closed:
            raise RuntimeError("VideoWriter is closed")
        try:
            for vf in frames:
                vf.pts = self.frames_written
                self._container.mux(self._video.encode(vf))
                self.frames_written += 1
            self._write_audio_until(self._audio_samples_for(self.frames_written))
        except OSError as exc:
            self._abort()
            raise self._storage_error(exc) from exc

    def _storage_error(self, exc: OSError) -> Exception:
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return SonicStorageError(
                str(self.path.parent),
                f"ran out of space while writing {self.path.name} ({exc.strerror or exc}); nothing was saved",
                "free space in the output folder and run again",
            )
        return exc

    def _as_chunk(self, frames: np.ndarray) -> np.ndarray:
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[1:3] != (self.height, self.width):
            raise SonicInputError(
                "images",
                f"frame chunk of shape {list(arr.shape)} does not match the video size {self.width}x{self.height}",
                "send frames [n, H, W, 3] of one size",
            )
        if arr.dtype != np.uint8:
            arr = np.clip(np.nan_to_num(arr.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if self.width % 2 or self.height % 2:
            arr = np.pad(arr, ((0, 0), (0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        return arr

    def _audio_samples_for(self, n_frames: int) -> int:
        if self._audio is None:
            return 0
        return round(Fraction(n_frames) / self.rate * self._audio.rate)

    def _write_audio_until(self, end: int) -> None:
        """Send audio samples [pos, end) to the encoder, padding with silence past the source's end."""
        import av

        if self._audio is None or end <= self._audio_pos:
            return
        src = self._audio_src
        block = 1024 * 16
        while self._audio_pos < end:
            stop = min(end, self._audio_pos + block)
            piece = src[:, self._audio_pos : min(stop, src.shape[1])]
            if piece.shape[1] < stop - self._audio_pos:
                piece = np.pad(piece, ((0, 0), (0, stop - self._audio_pos - piece.shape[1])))
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(piece, dtype=np.float32), format="fltp", layout=self._audio.layout.name
            )
            af.sample_rate = self._audio.rate
            af.pts = self._audio_pos
            af.time_base = Fraction(1, self._audio.rate)
            self._container.mux(self._audio.encode(af))
            self._audio_pos = stop

    def close(self) -> Path:
        """Finish the file (audio fitted to the video's exact length) and return its path."""
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self._abort()
            raise SonicInputError(
                "images", "no frames to encode", "connect a node that produces at least one frame"
            )
        try:
            self._write_audio_until(self._audio_samples_for(self.frames_written))
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._container.mux(self._audio.encode(None))
            self._container.close()
        except OSError as exc:
            self._abort()
            raise self._storage_error(exc) from exc
        except Exception:
            self._abort()
            raise
        self._closed = True
        os.replace(self._tmp, self.path)
        return self.path

    def _abort(self) -> None:
        self._closed = True
        try:
            self._container.close()
        except Exception:
            pass
        self._tmp.unlink(missing_ok=True)


def _audio_for_aac(audio: Audio) -> tuple[np.ndarray, int]:
    """[channels, n] float32 at an AAC sample rate, mono or stereo."""
    samples = np.asarray(audio.samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[None]
    if samples.shape[0] > 2:
        samples = samples[:2]  # front left/right of a surround layout
    rate = int(audio.sample_rate)
    if rate not in AAC_RATES:
        target = 48000 if rate > 48000 else min(r for r in AAC_RATES if r >= rate) if rate <= 96000 else 48000
        samples = np.stack([resample(ch, rate, target) for ch in samples])
        rate = target
    return np.clip(np.nan_to_num(samples), -1.0, 1.0), rate


def _check_settings(width: int, height: int, fps: float, crf: int, preset: str, codec: str) -> None:
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise SonicInputError(
            "fps", f"{fps!r} is not a usable frame rate", f"use a value in (0, {MAX_FPS:.0f}], e.g. 25"
        )
    if not (0 <= int(crf) <= 51):
        raise SonicInputError(
            "crf", f"{crf} is outside 0..51", "use 17-23 (lower is better quality, larger files)"
        )
    if preset not in PRESETS:
        raise SonicInputError("preset", f"unknown preset {preset!r}", f"use one of: {', '.join(PRESETS)}")
    if codec not in CODECS:
        raise SonicInputError("codec", f"unknown codec {codec!r}", f"use one of: {', '.join(CODECS)}")
    if codec not in available_codecs():
        raise SonicInputError("codec", f"{CODECS[codec]} is not in this PyAV build", "use codec 'h264'")
    if width < 1 or height < 1:
        raise SonicInputError(
            "images", f"frames of size {width}x{height} cannot be encoded", "send non-empty frames"
        )


def encode_video(
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    path: str | Path,
    audio: Audio | None = None,
    **kw: Any,
) -> Path:
    """Encode an array [N, H, W, 3] or an iterable of chunks [n, H, W, 3] to `path` (see VideoWriter)."""
    chunks = iter([frames]) if isinstance(frames, np.ndarray) else iter(frames)
    first = next(chunks, None)
    if first is None or np.asarray(first).size == 0:
        raise SonicInputError(
            "images", "no frames to encode", "connect a node that produces at least one frame"
        )
    first = np.asarray(first)
    height, width = first.shape[-3], first.shape[-2]
    with VideoWriter(path, width, height, fps, audio=audio, **kw) as writer:
        writer.write(first)
        for chunk in chunks:
            writer.write(chunk)
    return writer.path


def encode_source(
    source: Any, writer: VideoWriter, progress: Any | None = None, prefetch: bool = True
) -> int:
    """Encode every chunk of a FrameSource with `writer`; returns the frames written.

    The source is read, and each chunk converted to yuv420p, on a worker thread while this
    thread runs x264 on the previous chunk: a lite source renders there too, so rendering,
    colour conversion and encoding share the cores the way the engine-only benchmark does.
    """
    from .frames import prefetched

    converted = (writer.convert(chunk) for chunk in source.chunks())
    chunks = prefetched(converted) if prefetch else converted
    try:
        for frames in chunks:
            if progress is not None:
                progress.check_cancel()
            writer.write_converted(frames)
            if progress is not None:
                progress.update(len(frames))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return writer.frames_written
