"""The official Sonic face detector (yoloface_v5m.pt), used when the user has that file.

Facts from the official code (jixiaozhong/Sonic, src/dataset/face_align/yoloface.py),
reimplemented: the file is a TorchScript module (loaded with torch.jit.load, so
no yolov5 source is needed); it is called as `model(image, grids)` where image
is RGB float [1, 3, h, w] in 0..1, resized (bilinear) so the short side is 416
and each side rounded up to a multiple of 32, and grids is a list of three
[1, 1, h/s, w/s, 2] float (x, y) cell grids for strides 8, 16, 32. It returns
[1, N, 16] rows: centre x, centre y, w, h, objectness, 5 landmark points
(10 values), class score. Detections keep objectness x class > 0.5 and go
through NMS at IoU 0.45; boxes scale back by (w0/w, h0/h).

It gives boxes only; the 68 landmarks still come from the dlib shape predictor.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SonicModelError
from .types import Box

MODEL_FILE = "yoloface_v5m.pt"
INPUT_SHORT_SIDE = 416
STRIDES = (8, 16, 32)
CONF_THRESHOLD = 0.5
IOU_THRESHOLD = 0.45


def find_model(model_dirs: Sequence[Path | str] | None = None) -> Path | None:
    """Path of yoloface_v5m.pt in the given dirs (or $SONIC_MODELS_DIR), or None."""
    dirs = list(model_dirs or [])
    if not dirs and os.environ.get("SONIC_MODELS_DIR"):
        dirs = [os.environ["SONIC_MODELS_DIR"]]
    for d in dirs:
        for candidate in (Path(d) / MODEL_FILE, Path(d) / "Sonic" / MODEL_FILE):
            if candidate.is_file():
                return candidate
    return None


class YoloFaceAnalyzer:
    """FaceAnalyzer over the official TorchScript detector (+ dlib for landmarks)."""

    name = "yoloface-v5m"

    def __init__(self, path: Path | str, device: str | None = None, landmarker: Any | None = None) -> None:
        import torch

        self.path = Path(path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            with (
                warnings.catch_warnings()
            ):  # newer torch marks TorchScript deprecated; the file is TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as exc:  # not TorchScript, truncated, or saved by an incompatible torch
            raise SonicModelError(
                f"{self.path}: cannot load as TorchScript ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"use the official {MODEL_FILE} from the Sonic release or detector='dlib'"
            ) from None
        self._landmarker = landmarker
        self.threshold = CONF_THRESHOLD
        self._grids: tuple[tuple[int, int], list[Any]] | None = None

    def _grids_for(self, h: int, w: int) -> list[Any]:
        import torch

        if self._grids is None or self._grids[0] != (h, w):
            grids = []
            for s in STRIDES:
                ys, xs = torch.meshgrid(torch.arange(h // s), torch.arange(w // s), indexing="ij")
                grids.append(torch.stack((xs, ys), 2).view(1, 1, h // s, w // s, 2).float().to(self.device))
            self._grids = ((h, w), grids)
        return self._grids[1]

    def detect(self, image: np.ndarray) -> list[Box]:
        import cv2
        import torch

        h0, w0 = image.shape[:2]
        r = INPUT_SHORT_SIDE / min(h0, w0)
        h1 = int(h0 * r + 31) // 32 * 32
        w1 = int(w0 * r + 31) // 32 * 32
        resized = cv2.resize(image, (w1, h1), interpolation=cv2.INTER_LINEAR)
        x = (
            torch.from_numpy(np.ascontiguousarray(resized)).to(self.device).permute(2, 0, 1)[None].float()
            / 255.0
        )
        with torch.inference_mode():
            pred = self.model(x, self._grids_for(h1, w1))
        if isinstance(pred, list | tuple):
            pred = pred[0]
        rows = pred.detach().float().cpu().numpy().reshape(-1, pred.shape[-1])
        boxes = decode_detections(rows, self.threshold)
        out: list[Box] = []
        for x0, y0, x1, y1 in boxes:
            bx0 = int(np.clip(round(x0 * w0 / w1), 0, w0))
            by0 = int(np.clip(round(y0 * h0 / h1), 0, h0))
            bx1 = int(np.clip(round(x1 * w0 / w1), 0, w0))
            by1 = int(np.clip(round(y1 * h0 / h1), 0, h0))
            if bx1 > bx0 and by1 > by0:
                out.append((bx0, by0, bx1, by1))
        return sorted(out, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)

    def with_threshold(self, threshold: float) -> YoloFaceAnalyzer:
        """The same loaded model keeping detections whose objectness x class score is above `threshold`."""
        import copy

        other = copy.copy(self)
        other.threshold = float(threshold)
        return other

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        if self._landmarker is None:
            from .face import default_analyzer

            self._landmarker = default_analyzer()
        return self._landmarker.landmarks(image, box)


def decode_detections(
    rows: np.ndarray, conf_threshold: float = CONF_THRESHOLD, iou_threshold: float = IOU_THRESHOLD
) -> np.ndarray:
    """[N, 15 + classes] raw rows -> [K, 4] xyxy boxes (network input coordinates) after NMS."""
    if rows.size == 0:
        return np.zeros((0, 4), np.float32)
    rows = rows[rows[:, 4] > conf_threshold]
    if rows.size == 0:
        return np.zeros((0, 4), np.float32)
    scores = (rows[:, 15:] * rows[:, 4:5]).max(axis=1)
    keep = scores > conf_threshold
    rows, scores = rows[keep], scores[keep]
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes[nms(boxes, scores, iou_threshold)]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept: list[int] = []
    while order.size:
        i = int(order[0])
        kept.append(i)
        rest = order[1:]
        ix0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        iy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        ix1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        iy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(kept, dtype=np.int64)
