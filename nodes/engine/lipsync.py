"""Measure and correct the audio/video offset of a talking-head clip from any backend.

The mouth seen in the frames (inner-lip opening from 68-point landmarks,
tracked frame to frame) is correlated with the loudness of the audio at the
frame rate; the lag of the best correlation, refined between frames by a
parabola through the peak, is the offset. Positive means the video is late
(the mouth moves after the sound). Correction shifts the frames against the
audio by whole frames (the first/last frame is repeated at the ends), so the
output still has exactly as many frames as the audio needs.

Temporal smoothing (deflicker) is a motion-adaptive recursive filter: pixels
that barely change are averaged with the previous output, pixels that move
are left alone, and the mouth is never blended (that would smear speech).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .errors import SonicInputError
from .face import EYE_LEFT, EYE_RIGHT, MOUTH_OUTER, FaceAnalyzer, mouth_analyzer
from .frames import FrameSource, RemappedSource, array_source
from .progress import Progress
from .types import Audio, Box

MODES = ("auto", "manual")
MANUAL_RANGE = 0.5  # seconds either way
MAX_SEARCH = 1.0  # seconds: the largest max_offset accepted
_STABLE = np.r_[27:48]  # nose and eyes: they do not move when the mouth does (tracking anchor)
_DETECT_TRIES = 3


@dataclass
class MouthMotion:
    """Per frame: inner-lip opening (in eye distances) and the landmarks it was read from."""

    openings: np.ndarray  # [N] float32 (frames before the face is found repeat its first reading)
    landmarks: np.ndarray  # [N, 68, 2] float32


@dataclass(frozen=True)
class OffsetEstimate:
    seconds: float  # + : video late (mouth after sound)
    frames: float
    correlation: float  # Pearson r at the peak (how much to trust it)


@dataclass
class LipSyncResult:
    frames: np.ndarray  # [n, H, W, 3] uint8, n = round(audio duration x fps)
    offset_seconds: float  # measured (auto) or applied (manual)
    applied_frames: int  # whole frames the video was moved earlier (+) or later (-)
    correlation: float | None = None  # auto only
    notes: list[str] = field(default_factory=list)


# --- what the frames show ----------------------------------------------------------------------------
class FaceTracker:
    """Landmarks frame after frame, read in a small region around the face.

    The face is found once - from the box the frames come with (SONIC_FRAMES carry the face box
    SONIC_PreData detected) or, for frames of unknown origin, by detecting it - then each frame's
    box follows the previous frame's nose and eyes (keeping the shape the detector gave it), and
    the landmark model only sees a crop a little larger than that box; an analyzer that can read
    the next frame from the last frame's points (the face mesh's `follow`) does that instead, and
    the box is the fallback when it loses the face. Steadier and far cheaper than detecting faces
    in every frame, and the cost does not grow with the frame size.
    """

    def __init__(self, analyzer: FaceAnalyzer | None = None, face_box: Box | None = None) -> None:
        self.analyzer = analyzer or mouth_analyzer()  # the face mesh: it also reads drawn mouths
        self.start_box = face_box
        self.relation: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.seen = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """[68, 2] landmarks, or None while no face has been found yet."""
        self.seen += 1
        if self.previous is None:
            if self.start_box is not None and self.seen == 1:
                box = self.start_box
            else:
                # Detection is slow: try the first frames, then every 10th until a face shows.
                if self.seen > _DETECT_TRIES and self.seen % 10:
                    return None
                boxes = self.analyzer.detect(_rgb8(frame))
                if not boxes:
                    return None
                box = boxes[0]
            points = self._landmarks(frame, box)
            self.relation = _box_relation(box, points)
        else:
            points = self._follow(frame)
            if points is None:
                points = self._landmarks(frame, _box_from(self.relation, self.previous))
        self.previous = points
        return points

    def _follow(self, frame: np.ndarray) -> np.ndarray | None:
        """The analyzer's own frame-to-frame reading, where it has one (the face mesh: one look
        instead of up to seven), in a crop that holds the region it reads; None when it has none
        or lost the face."""
        follow = getattr(self.analyzer, "follow", None)
        if follow is None:
            return None
        lo, hi = np.floor(self.previous.min(axis=0)), np.ceil(self.previous.max(axis=0))
        region, origin = _crop(frame, (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])), _FOLLOW_REACH)
        points = follow(region, self.previous - origin)
        return None if points is None else np.asarray(points, dtype=np.float32) + origin

    def _landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """Landmarks from a crop of `frame` around `box` (grown by a quarter of its size on each side)."""
        region, origin = _crop(frame, box, 0.25)
        x0, y0, x1, y1 = box
        local = (x0 - int(origin[0]), y0 - int(origin[1]), x1 - int(origin[0]), y1 - int(origin[1]))
        return np.asarray(self.analyzer.landmarks(region, local), dtype=np.float32) + origin


# FaceMesh.follow reads a square of 1.6 x the points' extent about their centre, turned by the
# eye line: up to 1.13 x the extent from the centre, 0.63 beyond the points' box on each side.
_FOLLOW_REACH = 0.65


def _crop(frame: np.ndarray, box: Box, grow: float) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB crop of `frame` around `box` grown by `grow` x its size on each side (the whole
    frame when the box left the picture), and the crop's top left corner as float32 (x, y).

    Why a crop: only those pixels are converted (a core IMAGE is float), so the cost of reading
    a face does not grow with the frame size.
    """
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = box
    gx, gy = int((x1 - x0) * grow) + 2, int((y1 - y0) * grow) + 2
    rx0, ry0 = max(0, x0 - gx), max(0, y0 - gy)
    rx1, ry1 = min(w, x1 + gx), min(h, y1 + gy)
    if rx1 - rx0 < 8 or ry1 - ry0 < 8:
        rx0, ry0, rx1, ry1 = 0, 0, w, h
    return _rgb8(frame[ry0:ry1, rx0:rx1]), np.float32([rx0, ry0])


class NoFaceInFrames(SonicInputError):
    """Auto mode found no face to measure (correct() passes the frames through instead)."""


def track_landmarks(
    frames: Iterable[np.ndarray],
    analyzer: FaceAnalyzer | None = None,
    progress: Progress | None = None,
    face_box: Box | None = None,
) -> np.ndarray:
    """[N, 68, 2] landmarks of every frame (frames before the face is first found copy its first landmarks).

    `face_box`: where the face is in the first frame, when known (no detection then)."""
    tracker = FaceTracker(analyzer, face_box)
    found: list[np.ndarray | None] = []
    for i, frame in enumerate(frames):
        found.append(tracker(frame))
        if progress is not None and i % 25 == 24:
            progress.check_cancel()
            progress.update(25)
    if progress is not None and len(found) % 25:
        progress.update(len(found) % 25)
    if not found:
        raise SonicInputError("images", "no frames were given", "connect the frames to correct")
    first = next((p for p in found if p is not None), None)
    if first is None:
        raise NoFaceInFrames(
            "images",
            "no face found in the frames",
            "use auto mode only on talking-head frames, or use manual mode",
        )
    return np.stack([first if p is None else p for p in found])


def _rgb8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    return np.clip(np.asarray(frame, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _stable_box(points: np.ndarray) -> np.ndarray:
    s = points[_STABLE]
    return np.array([*s.min(axis=0), *s.max(axis=0)], dtype=np.float64)


def _box_relation(box: Box, points: np.ndarray) -> np.ndarray:
    """The detector box in units of the nose/eye box (so it can be rebuilt from landmarks)."""
    s = _stable_box(points)
    w, h = max(1.0, s[2] - s[0]), max(1.0, s[3] - s[1])
    return np.array([(box[0] - s[0]) / w, (box[1] - s[1]) / h, (box[2] - s[0]) / w, (box[3] - s[1]) / h])


def _box_from(relation: np.ndarray, points: np.ndarray) -> Box:
    s = _stable_box(points)
    w, h = max(1.0, s[2] - s[0]), max(1.0, s[3] - s[1])
    x0, y0 = s[0] + relation[0] * w, s[1] + relation[1] * h
    x1, y1 = s[0] + relation[2] * w, s[1] + relation[3] * h
    return (round(x0), round(y0), max(round(x1), round(x0) + 2), max(round(y1), round(y0) + 2))


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap in eye distances (so it does not change with face size): [N] for [N, 68, 2]."""
    pts = np.asarray(landmarks, dtype=np.float64)
    gap = np.linalg.norm(pts[:, [61, 62, 63]] - pts[:, [67, 66, 65]], axis=2).mean(axis=1)
    eyes = np.linalg.norm(pts[:, EYE_LEFT].mean(axis=1) - pts[:, EYE_RIGHT].mean(axis=1), axis=1)
    return (gap / np.maximum(eyes, 1e-6)).astype(np.float32)


def mouth_motion(
    frames: Iterable[np.ndarray],
    analyzer: FaceAnalyzer | None = None,
    progress: Progress | None = None,
    face_box: Box | None = None,
) -> MouthMotion:
    landmarks = track_landmarks(frames, analyzer, progress, face_box)
    return MouthMotion(openings=mouth_opening(landmarks), landmarks=landmarks)


# --- what the audio says -----------------------------------------------------------------------------
def audio_envelope(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Loudness over each frame's display interval [i/fps, (i+1)/fps), 0 (silence) .. 1 (loud)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x.reshape(-1)
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    edges = np.clip(edges, 0, len(x))
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    counts = np.maximum(edges[1:] - edges[:-1], 1)
    power = (csum[edges[1:]] - csum[edges[:-1]]) / counts
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    loud = db[db > -60.0]
    ref = float(np.percentile(loud, 95)) if loud.size else -60.0
    return np.clip((db - max(ref - 35.0, -60.0)) / 35.0, 0.0, 1.0).astype(np.float32)


# --- the offset --------------------------------------------------------------------------------------
def estimate_offset(
    openings: np.ndarray, envelope: np.ndarray, fps: float, max_offset: float
) -> OffsetEstimate:
    """Lag (within +-max_offset) at which the mouth best follows the audio, refined below a frame."""
    m = _detrend(np.nan_to_num(np.asarray(openings, dtype=np.float64), nan=0.0), fps)
    e = _detrend(np.asarray(envelope, dtype=np.float64), fps)
    n = min(len(m), len(e))
    m, e = m[:n], e[:n]
    k_max = min(int(np.floor(max_offset * fps + 1e-9)), n // 3)
    lags = np.arange(-k_max - 1, k_max + 2)
    corr = np.array([_pearson(m, e, int(k)) for k in lags])
    inner = slice(1, len(lags) - 1)  # the outer two lags are only for interpolation
    if not np.isfinite(corr[inner]).any():
        return OffsetEstimate(0.0, 0.0, 0.0)
    best = int(np.nanargmax(np.where(np.isfinite(corr[inner]), corr[inner], -np.inf))) + 1
    lag = float(lags[best])
    y0, y1, y2 = corr[best - 1], corr[best], corr[best + 1]
    denom = y0 - 2 * y1 + y2
    if np.isfinite(denom) and denom < 0:
        lag += float(np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5))
    lag = float(np.clip(lag, -max_offset * fps, max_offset * fps)) + 0.0  # no "-0.0" in the UI
    return OffsetEstimate(seconds=lag / fps, frames=lag, correlation=float(y1))


def _detrend(x: np.ndarray, fps: float) -> np.ndarray:
    """Remove the slow trend (about 1 s) so the syllable rhythm decides the lag, not overall level."""
    k = max(3, int(round(fps)) | 1)
    pad = np.pad(x, (k // 2, k // 2), mode="edge")
    trend = np.convolve(pad, np.ones(k) / k, mode="valid")
    return x - trend


def _pearson(m: np.ndarray, e: np.ndarray, lag: int) -> float:
    """corr(m[t], e[t - lag]) over the frames where both exist."""
    n = len(m)
    a, b = (m[lag:], e[: n - lag]) if lag >= 0 else (m[: n + lag], e[-lag:])
    if len(a) < 8:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


# --- the correction ----------------------------------------------------------------------------------
def shift_indices(n_in: int, n_out: int, shift: int) -> np.ndarray:
    """Source frame for each output frame when the video moves `shift` frames earlier (+) or later (-)."""
    return np.clip(np.arange(n_out) + int(shift), 0, n_in - 1)


def deflicker(
    frames: Iterable[np.ndarray], strength: float, mouth_boxes: Iterable[Box | None] | None = None
) -> Iterator[np.ndarray]:
    """Temporal smoothing of uint8 frames in two steps, never inside the mouth boxes.

    1. Exposure: each frame's mean colour (mouth left out) is pulled towards a running
       average, which removes whole-frame brightness/colour jumps.
    2. Texture: a pixel that barely changed since the previous output is blended with
       it; a pixel that moved (head, eyes) is left alone, so motion does not ghost.
    """
    import cv2  # here, not at module level: the node registry imports this module

    strength = float(np.clip(strength, 0.0, 1.0))
    boxes = iter(mouth_boxes) if mouth_boxes is not None else None
    keep_mean = 0.9 * strength  # running-average weight for the mean colour
    sigma = 2.0 + 8.0 * strength  # grey-level change that counts as motion, not flicker
    # Blend weight as a function of the (blurred) grey-level change, as a lookup table.
    levels = np.arange(256, dtype=np.float32)
    table = (0.8 * strength * np.exp(-((levels / sigma) ** 2))).astype(np.float32)
    prev: np.ndarray | None = None
    target: np.ndarray | None = None
    for frame in frames:
        box = next(boxes, None) if boxes is not None else None
        if strength <= 0:
            yield frame
            continue
        mean = _mean_colour(frame, box)
        target = mean if target is None else target + (1.0 - keep_mean) * (mean - target)
        cur = frame.astype(np.float32)
        cur += (target - mean).astype(np.float32)
        if prev is not None:
            diff = cv2.cvtColor(cv2.absdiff(cur, prev), cv2.COLOR_RGB2GRAY)
            change = cv2.blur(np.minimum(diff, 255.0).astype(np.uint8), (5, 5))
            weight = table[change]
            if box is not None:
                _clear_box(weight, box)
            cur = cv2.blendLinear(prev, cur, weight, 1.0 - weight)
        prev = cur
        yield np.clip(cur + 0.5, 0, 255).astype(np.uint8)


def _mean_colour(frame: np.ndarray, box: Box | None) -> np.ndarray:
    """Mean RGB of the frame outside `box` (from a 1/8-size copy: exposure is a global thing)."""
    import cv2

    h, w = frame.shape[:2]
    small = cv2.resize(frame, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA).astype(
        np.float64
    )
    total, count = small.sum(axis=(0, 1)), small.shape[0] * small.shape[1]
    if box is not None:
        x0, y0, x1, y1 = (max(0, v // 8) for v in box)
        inner = small[y0:y1, x0:x1]
        if inner.size and inner.shape[0] * inner.shape[1] < count:
            total, count = total - inner.sum(axis=(0, 1)), count - inner.shape[0] * inner.shape[1]
    return total / count


def _clear_box(weight: np.ndarray, box: Box) -> None:
    """Zero the weight inside `box` with a soft border (no seam where blending starts)."""
    h, w = weight.shape
    x0, y0, x1, y1 = box
    pad = max(2, (x1 - x0) // 4)
    ys = np.arange(max(0, y0 - pad), min(h, y1 + pad))
    xs = np.arange(max(0, x0 - pad), min(w, x1 + pad))
    if ys.size == 0 or xs.size == 0:
        return
    dy = np.maximum(np.maximum(y0 - ys, ys - (y1 - 1)), 0) / pad
    dx = np.maximum(np.maximum(x0 - xs, xs - (x1 - 1)), 0) / pad
    ramp = np.clip(np.maximum.outer(dy, dx), 0.0, 1.0).astype(np.float32)
    weight[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] *= ramp


def mouth_box(points: np.ndarray, grow: float = 0.35) -> Box:
    """The outer lips' box grown by `grow` x the mouth width (covers the jaw's motion near the lips)."""
    lips = points[MOUTH_OUTER]
    x0, y0 = lips.min(axis=0)
    x1, y1 = lips.max(axis=0)
    g = grow * (x1 - x0)
    return (int(x0 - g), int(y0 - g), int(np.ceil(x1 + g)), int(np.ceil(y1 + 1.5 * g)))


def check_settings(fps: float, mode: str, offset: float, max_offset: float, smoothing: float) -> None:
    if not (np.isfinite(fps) and fps > 0):
        raise SonicInputError(
            "fps", f"{fps!r} is not a frame rate", "use the rate the frames were made at (25)"
        )
    if mode not in MODES:
        raise SonicInputError("mode", f"unknown mode {mode!r}", "use 'auto' or 'manual'")
    if not (np.isfinite(offset) and abs(offset) <= MANUAL_RANGE):
        raise SonicInputError(
            "offset", f"{offset!r} s is outside +-{MANUAL_RANGE} s", "use a value in -0.5..0.5"
        )
    if not (np.isfinite(max_offset) and 0 <= max_offset <= MAX_SEARCH):
        raise SonicInputError("max_offset", f"{max_offset!r} s is outside 0..{MAX_SEARCH} s", "use 0.3")
    if not (np.isfinite(smoothing) and 0 <= smoothing <= 1):
        raise SonicInputError("smoothing", f"{smoothing!r} is outside 0..1", "use 0 (off) to 1 (strongest)")


@dataclass
class SourceCorrection:
    """correct_source()'s result: the corrected frames as a lazily evaluated source."""

    source: FrameSource  # round(audio duration x fps) frames, shifted (and deflickered) as they are read
    offset_seconds: float  # measured (auto) or applied (manual)
    applied_frames: int  # whole frames the video was moved earlier (+) or later (-)
    correlation: float | None = None  # auto, when measured
    notes: list[str] = field(default_factory=list)
    measured: bool = False


def correct_source(
    source: FrameSource,
    mode: str = "auto",
    offset: float = 0.0,
    max_offset: float = 0.3,
    smoothing: float = 0.0,
    analyzer: FaceAnalyzer | None = None,
    progress: Progress | None = None,
) -> SourceCorrection:
    """Measure (auto) or take (manual) the offset of `source` against its own audio, and return
    the frames moved to fix it, optionally deflickered.

    Measuring reads the clip once (landmarks in a small region around the face box the source
    carries); the output is computed while it is read (nothing is stored). Frames whose timing is
    exact by construction (`info.in_sync`: the lite backend with its own audio) are not measured:
    their offset is 0.
    """
    info = source.info
    check_settings(info.fps, mode, offset, max_offset, smoothing)
    if info.audio is None:
        raise SonicInputError(
            "audio", "no audio to sync the frames to", "connect the speech the frames were made from"
        )
    samples = np.asarray(info.audio.samples, dtype=np.float32)
    rate = int(info.audio.sample_rate)
    n_audio = samples.shape[-1]
    if n_audio == 0 or rate <= 0:
        raise SonicInputError("audio", "the audio is empty", "connect the speech the frames were made from")
    n_out = max(1, round(n_audio / rate * info.fps))
    fps = info.fps
    notes: list[str] = []
    landmarks = None
    correlation = None
    seconds = float(offset) if mode == "manual" else 0.0
    face_found = True
    measured = False
    if mode == "auto" and info.in_sync:
        notes.append(
            f"{info.origin} frames are in sync with their audio by construction: offset not measured"
        )
    elif mode == "auto":
        try:
            motion = mouth_motion(source.iter_frames(), analyzer, progress, info.face_box)
        except NoFaceInFrames:
            # Losing an expensive render over a measurement would be worse than not correcting it.
            face_found = False
            notes.append("no face found in the frames: offset not measured, frames passed through unshifted")
        else:
            measured = True
            landmarks = motion.landmarks
            envelope = audio_envelope(samples, rate, fps, len(source))
            est = estimate_offset(motion.openings, envelope, fps, max_offset)
            seconds, correlation = est.seconds, est.correlation
            if est.correlation < 0.2:
                notes.append(
                    f"weak mouth/audio correlation ({est.correlation:.2f}): the offset may be unreliable"
                )
    shift = round(seconds * fps)
    idx = shift_indices(len(source), n_out, shift)
    boxes = None
    if smoothing > 0 and face_found and landmarks is None:
        try:
            landmarks = track_landmarks(source.iter_frames(), analyzer, progress, info.face_box)
        except NoFaceInFrames:
            face_found = False
    if smoothing > 0 and not face_found:
        notes.append("smoothing skipped: it needs the mouth position to leave the lips sharp")
        smoothing = 0.0
    elif smoothing > 0:
        boxes = [mouth_box(landmarks[i]) for i in idx]
    if smoothing == 0 and n_out == len(source) and shift == 0:
        out: FrameSource = source  # nothing to change: the same frames, read once by the next node
    else:
        out = RemappedSource(source, idx, smoothing, boxes, cancel=progress)
    return SourceCorrection(
        source=out,
        offset_seconds=float(seconds),
        applied_frames=int(shift),
        correlation=correlation,
        notes=notes,
        measured=measured,
    )


def correct(
    frames: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    mode: str = "auto",
    offset: float = 0.0,
    max_offset: float = 0.3,
    smoothing: float = 0.0,
    analyzer: FaceAnalyzer | None = None,
    progress: Progress | None = None,
) -> LipSyncResult:
    """correct_source() for frames in memory: uint8 [N, H, W, 3] and audio [n] or [C, n].

    The result has round(audio duration x fps) frames, whatever N was.
    """
    check_settings(fps, mode, offset, max_offset, smoothing)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise SonicInputError(
            "images", f"expected [N, H, W, 3] frames, got shape {frames.shape}", "connect an image batch"
        )
    samples = np.asarray(audio, dtype=np.float32)
    sound = Audio(samples if samples.ndim == 2 else samples.reshape(1, -1), int(sample_rate))
    source = array_source(frames, fps, sound)
    fixed = correct_source(source, mode, offset, max_offset, smoothing, analyzer, progress)
    out = fixed.source
    result = np.concatenate(list(out.chunks())) if out is not source else frames
    return LipSyncResult(
        frames=result,
        offset_seconds=fixed.offset_seconds,
        applied_frames=fixed.applied_frames,
        correlation=fixed.correlation,
        notes=fixed.notes,
    )
