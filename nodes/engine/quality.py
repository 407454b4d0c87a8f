"""Numbers that say whether a talking-head clip is any good, for any backend's output.

- A/V offset: where the mouth best follows the audio (lipsync.estimate_offset);
  0 is right, more than about +-45 ms (late video) is visible.
- Mouth/audio correlation: Pearson r between the inner-lip opening and the
  loudness per frame (at zero lag and at the measured lag): does the mouth
  follow the speech at all.
- Identity: SSIM (grey, Gaussian window) between each sampled frame and the
  reference portrait aligned onto it by the eyes and nose, over the face with
  the mouth region left out: did the face stay the person in the photo.
- Flicker: mean absolute second temporal difference of a blurred, reduced
  grey image outside the mouth, in grey levels: 0 for a still image, small
  for smooth motion, large when brightness or texture jumps frame to frame.

Everything runs in one pass over the frames, so long clips need no more
memory than short ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import SonicInputError
from .face import FaceAnalyzer, default_analyzer
from .lipsync import FaceTracker, audio_envelope, estimate_offset, mouth_box, mouth_opening

_ALIGN = np.r_[27:36, 36:48]  # nose and eye points: unaffected by speech
_FLICKER_WIDTH = 128  # flicker is measured on a copy this wide
_SSIM_PER_SECOND = 2.0


@dataclass(frozen=True)
class QualityReport:
    frames: int
    fps: float
    duration: float
    av_offset_seconds: float  # + : video late
    av_offset_frames: float
    mouth_audio_correlation: float  # at zero lag
    mouth_audio_correlation_at_offset: float
    identity_ssim: float  # 0..1, face outside the mouth vs the reference
    flicker: float  # grey levels, lower is steadier

    def lines(self) -> list[str]:
        return [
            f"frames               {self.frames} at {self.fps:g} fps ({self.duration:.2f} s)",
            f"A/V offset           {self.av_offset_seconds * 1000:+.1f} ms ({self.av_offset_frames:+.2f} frames; + = video late)",
            f"mouth/audio corr.    {self.mouth_audio_correlation:.3f} (at the offset: {self.mouth_audio_correlation_at_offset:.3f})",
            f"identity SSIM        {self.identity_ssim:.3f} (face outside the mouth vs the reference)",
            f"flicker              {self.flicker:.2f} grey levels",
        ]

    def as_dict(self) -> dict:
        return asdict(self)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two grey float images (0..255), Gaussian window sigma 1.5 (Wang et al. 2004)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (0, 0), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _face_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """The face (jaw line up to a little above the brows) minus the mouth and the jaw's motion."""
    brows = points[17:27].copy()
    lift = 0.15 * (points[8, 1] - brows[:, 1].mean())
    brows[:, 1] -= lift
    hull = cv2.convexHull(np.round(np.vstack([points[0:17], brows])).astype(np.int32))
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    x0, y0, x1, y1 = mouth_box(points, grow=0.3)
    mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 0
    return mask.astype(bool)


class _Identity:
    """SSIM of frames against the reference portrait, aligned by eyes and nose."""

    def __init__(self, reference: np.ndarray, analyzer: FaceAnalyzer) -> None:
        boxes = analyzer.detect(reference)
        if not boxes:
            raise SonicInputError(
                "reference",
                "no face found in the reference image",
                "pass the portrait the clip was made from",
            )
        self.points = np.asarray(analyzer.landmarks(reference, boxes[0]), dtype=np.float32)
        self.grey = _grey(reference)
        self.scores: list[float] = []

    def add(self, frame: np.ndarray, points: np.ndarray) -> None:
        matrix, _ = cv2.estimateAffinePartial2D(self.points[_ALIGN], points[_ALIGN], method=cv2.LMEDS)
        if matrix is None:
            return
        h, w = frame.shape[:2]
        source = self.grey
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if scale < 0.8:  # a larger reference is first shrunk by area averaging (no aliasing)
            rh, rw = source.shape
            source = cv2.resize(
                source, (max(1, round(rw * scale)), max(1, round(rh * scale))), interpolation=cv2.INTER_AREA
            )
            matrix = matrix.copy()
            matrix[:, :2] /= scale
            matrix[:, 2] -= matrix[:, :2] @ np.full(2, 0.5 * scale - 0.5)  # pixel-centre shift of the resize
        aligned = cv2.warpAffine(
            source, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        mask = _face_mask((h, w), points)
        if mask.sum() < 50:
            return
        self.scores.append(float(ssim_map(_grey(frame), aligned)[mask].mean()))


class _Flicker:
    def __init__(self) -> None:
        self.history: list[np.ndarray] = []
        self.values: list[float] = []

    def add(self, frame: np.ndarray, points: np.ndarray | None) -> None:
        h, w = frame.shape[:2]
        scale = min(1.0, _FLICKER_WIDTH / w)
        small = cv2.resize(
            _grey(frame), (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        small = cv2.GaussianBlur(small, (0, 0), 1.0)
        keep = np.ones(small.shape, dtype=bool)
        if points is not None:
            x0, y0, x1, y1 = (round(v * scale) for v in mouth_box(points, grow=0.5))
            keep[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
        if len(self.history) == 2:
            before, prev = self.history
            self.values.append(float(np.abs(small - 2 * prev + before)[keep].mean()))
        self.history = [*self.history[-1:], small]


def measure_frames(
    frames: Iterable[np.ndarray],
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    reference: np.ndarray,
    max_offset: float = 0.5,
    analyzer: FaceAnalyzer | None = None,
) -> QualityReport:
    """All measures for uint8 frames [H, W, 3] (any iterable) with their audio ([n] or [C, n])."""
    analyzer = analyzer or default_analyzer()
    tracker = FaceTracker(analyzer)
    identity = _Identity(np.ascontiguousarray(reference), analyzer)
    flicker = _Flicker()
    every = max(1, round(fps / _SSIM_PER_SECOND))
    found: list[np.ndarray | None] = []
    for i, frame in enumerate(frames):
        points = tracker(frame)
        found.append(points)
        flicker.add(frame, points)
        if points is not None and i % every == 0:
            identity.add(frame, points)
    n = len(found)
    first = next((p for p in found if p is not None), None)
    if first is None:
        raise SonicInputError("video", "no face found in the frames", "measure a talking-head clip")
    landmarks = np.stack([first if p is None else p for p in found])
    openings = mouth_opening(landmarks)
    envelope = audio_envelope(audio, sample_rate, fps, n)
    est = estimate_offset(openings, envelope, fps, max_offset)
    lag = round(est.frames)
    shifted = envelope[np.clip(np.arange(n) - lag, 0, n - 1)]
    return QualityReport(
        frames=n,
        fps=float(fps),
        duration=n / float(fps),
        av_offset_seconds=est.seconds,
        av_offset_frames=est.frames,
        mouth_audio_correlation=_corr(openings, envelope),
        mouth_audio_correlation_at_offset=_corr(openings, shifted),
        identity_ssim=float(np.mean(identity.scores)) if identity.scores else float("nan"),
        flicker=float(np.mean(flicker.values)) if flicker.values else 0.0,
    )


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def read_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """The file's first audio stream as mono float32 at `rate` (empty if it has none)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return np.zeros(0, dtype=np.float32)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


def iter_video(path: str | Path):
    """(fps, iterator of uint8 RGB frames) of the file's first video stream."""
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 25)

    def frames():
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        finally:
            container.close()

    return fps, frames()


def measure_video(path: str | Path, reference: np.ndarray, max_offset: float = 0.5) -> QualityReport:
    """All measures for an MP4 (or anything PyAV reads) with audio, against the reference portrait."""
    path = Path(path)
    if not path.is_file():
        raise SonicInputError("video", f"{path} does not exist", "pass the path of a rendered clip")
    audio = read_audio(path)
    if audio.size == 0:
        raise SonicInputError(
            "video", f"{path.name} has no audio track", "measure a clip encoded with its speech"
        )
    fps, frames = iter_video(path)
    return measure_frames(frames, audio, 16000, fps, reference, max_offset=max_offset)
