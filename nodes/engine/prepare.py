"""Portrait + speech -> SonicData: the whole preprocessing stage (what SONIC_PreData runs).

Order matters: every argument is checked first, then the audio, and only then
the (comparatively slow) face detection runs, so a bad value fails at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .audio_input import MIN_DURATION, check_audio, fit_length, max_duration, to_16k_mono
from .crop import expand_crop, face_mask, map_box, target_size
from .errors import SonicInputError
from .face import FaceAnalyzer, box_area, default_analyzer, mesh_analyzer
from .image_input import check_rgb_uint8
from .types import Audio, Box, SonicData

log = logging.getLogger(__name__)

REFERENCE_FPS = 25.0  # the tolerance for a user's duration is one frame at Sonic's output rate
FACE_SELECT = ("largest", "left_to_right", "center")
DETECTORS = ("blazeface", "dlib", "yoloface")
DEFAULT_DETECTOR = "blazeface"
#: One 0..1 confidence input for every detector; 0.5 is each one's own operating point (BlazeFace's
#: probability, the official yoloface objectness x class cut, dlib's SVM margin 0 via the logistic).
DEFAULT_FACE_THRESHOLD = 0.5
FACE_THRESHOLD_RANGE = (0.05, 0.95)
ON_MISMATCH = ("correct", "pad_or_trim", "error")
MIN_RESOLUTION_RANGE = (256, 2048)
EXPAND_RATIO_RANGE = (0.0, 2.0)


def prepare(
    image: np.ndarray,
    audio: Audio,
    *,
    duration: float = 0.0,
    min_resolution: int = 512,
    expand_ratio: float = 0.5,
    face_select: str = "largest",
    face_index: int = 0,
    detector: str = DEFAULT_DETECTOR,
    on_mismatch: str = "correct",
    face_threshold: float = DEFAULT_FACE_THRESHOLD,
    analyzer: FaceAnalyzer | None = None,
    model_dirs: Sequence[Path | str] | None = None,
) -> SonicData:
    """Crop, resize and mask the portrait; resample and fit the speech; return what a backend needs.

    `analyzer` overrides `detector` (tests, or a caller that keeps its own);
    `model_dirs` is where detector="yoloface" looks for yoloface_v5m.pt. `face_threshold` is the
    detector confidence (0..1) a face needs: lower finds fainter faces, higher refuses more.
    """
    check_arguments(
        duration, min_resolution, expand_ratio, face_select, face_index, detector, on_mismatch, face_threshold
    )
    check_rgb_uint8(image, "image")
    check_audio(audio, "audio")
    warnings: list[str] = []
    seconds = resolve_duration(float(duration), audio.duration, on_mismatch, warnings)

    analyzer = analyzer or _analyzer_for(detector, model_dirs, float(face_threshold), warnings)
    boxes = plausible_faces(analyzer, image, warnings)
    if not boxes:
        smallest = getattr(analyzer, "smallest_face", lambda _img: 80)(image)
        raise SonicInputError(
            "image",
            "no face found",
            f"use a portrait with a clearly visible, roughly frontal face at least ~{smallest} px wide "
            f"in this {image.shape[1]}x{image.shape[0]} image, or lower face_threshold "
            f"(now {float(face_threshold):g})",
        )
    chosen = choose_face(boxes, face_select, face_index, (image.shape[1], image.shape[0]))

    crop_box = expand_crop(chosen, (image.shape[1], image.shape[0]), expand_ratio)
    size = target_size(crop_box[2] - crop_box[0], crop_box[3] - crop_box[1], min_resolution)
    crop = resize(image[crop_box[1] : crop_box[3], crop_box[0] : crop_box[2]], size)
    face_in_crop = map_box(chosen, crop_box, size)
    landmarks = np.asarray(analyzer.landmarks(crop, face_in_crop), dtype=np.float32)

    fitted = fit_length(audio, seconds)
    return SonicData(
        image=crop,
        face_box=face_in_crop,
        face_mask=face_mask(face_in_crop, size),
        crop_box=crop_box,
        original=image,
        audio_16k=to_16k_mono(fitted),
        audio=fitted,
        duration=seconds,
        min_resolution=int(min_resolution),
        expand_ratio=float(expand_ratio),
        landmarks=landmarks,
        detector=analyzer.name,
        warnings=warnings,
    )


def check_arguments(
    duration: float,
    min_resolution: int,
    expand_ratio: float,
    face_select: str,
    face_index: int,
    detector: str,
    on_mismatch: str,
    face_threshold: float = DEFAULT_FACE_THRESHOLD,
) -> None:
    """Every plain argument, before any work (SonicInputError naming the argument)."""
    lo, hi = MIN_RESOLUTION_RANGE
    if isinstance(min_resolution, bool) or not isinstance(min_resolution, int | np.integer):
        raise SonicInputError(
            "min_resolution", f"must be an integer, got {min_resolution!r}", "use 384, 512, 768 or 1024"
        )
    if min_resolution % 64 or not lo <= min_resolution <= hi:
        raise SonicInputError(
            "min_resolution",
            f"{min_resolution} is not a multiple of 64 between {lo} and {hi}",
            "use 384, 512, 768 or 1024",
        )
    try:
        d = float(duration)
    except (TypeError, ValueError):
        d = math.nan
    if not math.isfinite(d) or d < 0:
        raise SonicInputError(
            "duration",
            f"{duration!r} is not a valid duration",
            "use 0 to take the length of the audio, or seconds > 0",
        )
    if d > 0 and d < MIN_DURATION:
        raise SonicInputError(
            "duration",
            f"{d} s is shorter than the minimum of {MIN_DURATION} s",
            "use 0 to take the audio's length",
        )
    if d > max_duration():
        raise SonicInputError(
            "duration",
            f"{d:.1f} s is longer than the maximum of {max_duration():.0f} s",
            "use 0 to take the audio's length, or split the speech into shorter clips",
        )
    elo, ehi = EXPAND_RATIO_RANGE
    try:
        e = float(expand_ratio)
    except (TypeError, ValueError):
        e = math.nan
    if not (math.isfinite(e) and elo <= e <= ehi):
        raise SonicInputError(
            "expand_ratio",
            f"{expand_ratio!r} is outside {elo}..{ehi}",
            "use 0.15-0.5 (0.5 is the official default)",
        )
    tlo, thi = FACE_THRESHOLD_RANGE
    try:
        t = float(face_threshold)
    except (TypeError, ValueError):
        t = math.nan
    if not (math.isfinite(t) and tlo <= t <= thi):
        raise SonicInputError(
            "face_threshold",
            f"{face_threshold!r} is outside {tlo}..{thi}",
            f"use {DEFAULT_FACE_THRESHOLD} (lower finds fainter faces, higher refuses more)",
        )
    _check_choice("face_select", face_select, FACE_SELECT)
    _check_choice("detector", detector, DETECTORS)
    _check_choice("on_mismatch", on_mismatch, ON_MISMATCH)
    if isinstance(face_index, bool) or not isinstance(face_index, int | np.integer) or face_index < 0:
        raise SonicInputError(
            "face_index", f"{face_index!r} is not an index", "use 0 for the first face, 1 for the next..."
        )


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SonicInputError(name, f"unknown value {value!r}", f"use one of: {', '.join(allowed)}")


def resolve_duration(requested: float, audio_seconds: float, on_mismatch: str, warnings: list[str]) -> float:
    """The clip length to generate: the audio's, unless the user asked otherwise (see on_mismatch)."""
    if requested == 0.0:
        return audio_seconds
    if abs(requested - audio_seconds) <= 1.0 / REFERENCE_FPS:
        return requested
    if on_mismatch == "error":
        raise SonicInputError(
            "duration",
            f"{requested:.3f} s differs from the audio's length of {audio_seconds:.3f} s",
            "set duration to 0 (use the audio's length), or on_mismatch to 'correct' or 'pad_or_trim'",
        )
    if on_mismatch == "pad_or_trim":
        action = "padded with silence" if requested > audio_seconds else "trimmed"
        message = f"duration {requested:.3f} s kept; the {audio_seconds:.3f} s audio is {action} to match"
        result = requested
    else:
        message = (
            f"duration {requested:.3f} s does not match the audio ({audio_seconds:.3f} s); "
            f"using the audio's length (set on_mismatch='pad_or_trim' to keep yours)"
        )
        result = audio_seconds
    log.warning("SONIC_PreData: %s", message)
    warnings.append(message)
    return result


#: A candidate whose confidence is below this share of the best one's is not a face to animate
#: (dlib's HOG gives a real face ~1.5 and a badge or a pattern ~0.0).
_RELATIVE_CONFIDENCE = 0.25


def plausible_faces(analyzer: FaceAnalyzer, image: np.ndarray, warnings: list[str]) -> list[Box]:
    """The detector's candidates that are faces: confident enough and with a face's landmark layout.

    Why: size alone picks a badge or a printed logo when it is as big as the face (the bundled
    astronaut in greyscale: the mission patch scores 0.0003 to her face's 1.5). Every candidate
    left out is named in ``warnings`` so the user sees it on the node.
    """
    scored = getattr(analyzer, "detect_scored", None)
    candidates = scored(image) if scored else [(b, 1.0) for b in analyzer.detect(image)]
    if not candidates:
        return []
    best = max(score for _, score in candidates)
    kept: list[Box] = []
    for box, score in sorted(candidates, key=lambda c: box_area(c[0]), reverse=True):
        confident = best <= 0 or score >= _RELATIVE_CONFIDENCE * best
        # The landmark check needs a scoring detector's real landmarks (dlib, blazeface): it runs
        # only on the candidates that are not the most confident one.
        layout = (
            not confident or score >= best or not scored or _face_layout(analyzer.landmarks(image, box), box)
        )
        if confident and layout:
            kept.append(box)
        else:
            why = "low detector confidence" if not confident else "its landmarks are not a face's layout"
            warnings.append(
                f"another face candidate at {tuple(int(v) for v in box)} was not used ({why}: {score:.2f} vs {best:.2f})"
            )
    if not kept:  # never lose the render over the check itself: fall back to the most confident
        kept = [max(candidates, key=lambda c: c[1])[0]]
    elif len(kept) > 1:
        warnings.append(f"{len(kept)} faces found; choose another with face_select / face_index")
    return kept


def _face_layout(points: np.ndarray, box: Box) -> bool:
    """Eyes above the nose tip above the mouth, eyes apart by a face's share of the box width."""
    points = np.asarray(points, dtype=np.float32)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        return False
    eye_r, eye_l = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    nose, mouth = points[30], points[48:60].mean(axis=0)
    eyes_y = (eye_r[1] + eye_l[1]) / 2
    ocular = float(np.hypot(*(eye_l - eye_r)))
    width = max(1.0, float(box[2] - box[0]))
    return bool(eyes_y < nose[1] < mouth[1] and 0.2 < ocular / width < 0.8)


def choose_face(boxes: list[Box], face_select: str, face_index: int, image_size: tuple[int, int]) -> Box:
    """Pick one face: the largest, the n-th from the left, or the one nearest the image centre."""
    if face_select == "largest":
        return max(boxes, key=box_area)
    if face_select == "center":
        cx, cy = image_size[0] / 2, image_size[1] / 2
        return min(boxes, key=lambda b: ((b[0] + b[2]) / 2 - cx) ** 2 + ((b[1] + b[3]) / 2 - cy) ** 2)
    ordered = sorted(boxes, key=lambda b: (b[0] + b[2]) / 2)
    if face_index >= len(ordered):
        raise SonicInputError(
            "face_index",
            f"{face_index} is out of range: {len(ordered)} face(s) found",
            f"use 0..{len(ordered) - 1} (faces are counted from the left)",
        )
    return ordered[face_index]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), Lanczos when enlarging.

    Deviation from the official preprocessing, kept on purpose: it resizes with one filter both
    ways (Lanczos), which aliases fine texture when a large photo is shrunk to 512. Pixel values
    differ by a few levels at edges; the crop's geometry is the same (README, "Differences from
    the official Sonic preprocessing").
    """
    import cv2

    w, h = size
    if (image.shape[1], image.shape[0]) == (w, h):
        return np.ascontiguousarray(image)
    shrinking = w < image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)


def _analyzer_for(
    detector: str,
    model_dirs: Sequence[Path | str] | None,
    threshold: float | None = None,
    warnings: list[str] | None = None,
) -> FaceAnalyzer:
    """The loaded detector (cached per process), at `threshold` when given (models are shared)."""
    analyzer = _base_analyzer(detector, model_dirs, warnings)
    if threshold is not None and hasattr(analyzer, "with_threshold"):
        analyzer = analyzer.with_threshold(threshold)
    return analyzer


def _base_analyzer(
    detector: str, model_dirs: Sequence[Path | str] | None, warnings: list[str] | None
) -> FaceAnalyzer:
    if detector == "dlib":
        return default_analyzer()
    if detector == "blazeface":
        try:
            return _cached_blazeface()
        except ModuleNotFoundError as exc:
            # The default must not stop a render on an install that lacks the model files:
            # dlib instead, said on the node (it misses many drawn and 3D-rendered faces).
            message = (
                f"detector blazeface unavailable ({exc}); used dlib, which misses many drawn and 3D faces"
            )
            log.warning("SONIC_PreData: %s", message)
            if warnings is not None:
                warnings.append(message)
            return default_analyzer()
    from . import yoloface

    path = yoloface.find_model(model_dirs)
    if path is None:
        raise SonicInputError(
            "detector",
            f"'yoloface' needs {yoloface.MODEL_FILE} in the sonic model folder, which was not found",
            "put the official file in models/sonic, or choose detector 'blazeface' or 'dlib'",
        )
    return _cached_yoloface(str(path))


_YOLO_CACHE: dict[str, FaceAnalyzer] = {}


def _cached_yoloface(path: str) -> FaceAnalyzer:
    from .yoloface import YoloFaceAnalyzer

    if path not in _YOLO_CACHE:
        _YOLO_CACHE.clear()
        _YOLO_CACHE[path] = YoloFaceAnalyzer(path)
    return _YOLO_CACHE[path]


def _cached_blazeface() -> FaceAnalyzer:
    """BlazeFace + face mesh (find stylised faces dlib's HOG misses); models load once per process
    (face.mesh_analyzer, shared with LipSyncCorrect)."""
    return mesh_analyzer()
