"""Put animated face crops back into the full original picture.

Backends animate the square crop around the face; users often want their
whole photo back. Each frame is resized to the crop's size in the original
and blended in with a feathered border, so any difference at the crop's edge
(head motion reaching the border, a diffusion model's colour drift) fades
out instead of showing a seam. Edges of the crop that lie on the picture's
own border need no feather and get none.
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import SonicData

FEATHER = 0.06  # feather width as a share of the crop's shorter side


class PasteBack:
    """Built once per clip (the mask is reused); call it on each uint8 chunk [n, h, w, 3]."""

    def __init__(self, data: SonicData, feather: float = FEATHER) -> None:
        self.original = np.ascontiguousarray(data.original)
        oh, ow = self.original.shape[:2]
        x0, y0, x1, y1 = (int(v) for v in data.crop_box)
        self.box = (x0, y0, x1, y1)
        # The part of the crop that lies inside the picture (a crop is normally all inside).
        self.inside = (max(x0, 0), max(y0, 0), min(x1, ow), min(y1, oh))
        cw, ch = x1 - x0, y1 - y0
        width = max(2.0, feather * min(cw, ch))
        ramp_x = _ramp(cw, width, x0 > 0, x1 < ow)
        ramp_y = _ramp(ch, width, y0 > 0, y1 < oh)
        mask = np.minimum.outer(ramp_y, ramp_x).astype(np.float32)
        ix0, iy0, ix1, iy1 = self.inside
        self.mask = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0, None]
        self.background = self.original[iy0:iy1, ix0:ix1].astype(np.float32)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        ix0, iy0, ix1, iy1 = self.inside
        size = (x1 - x0, y1 - y0)
        out = np.repeat(self.original[None], len(chunk), axis=0)
        for i, frame in enumerate(chunk):
            shrink = size[0] < frame.shape[1]
            resized = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            face = resized[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0].astype(np.float32)
            blended = self.background + (face - self.background) * self.mask
            out[i, iy0:iy1, ix0:ix1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out


def _ramp(n: int, width: float, fade_start: bool, fade_end: bool) -> np.ndarray:
    """0 -> 1 over `width` pixels from each end that needs a feather, 1 elsewhere (smoothstep)."""
    pos = np.arange(n, dtype=np.float32) + 0.5
    r = np.ones(n, dtype=np.float32)
    if fade_start:
        r = np.minimum(r, np.clip(pos / width, 0.0, 1.0))
    if fade_end:
        r = np.minimum(r, np.clip((n - pos) / width, 0.0, 1.0))
    return r * r * (3.0 - 2.0 * r)


def paste_back(chunk: np.ndarray, data: SonicData) -> np.ndarray:
    """Frames at the original picture's size (uint8 [n, H0, W0, 3]); see PasteBack for many chunks."""
    return PasteBack(data)(chunk)
