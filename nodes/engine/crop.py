"""Where to crop the portrait, how large to make it, and where the face mask goes.

The rule follows the official Sonic preprocessing (facts read from its code,
reimplemented here):
1. grow the face box by `expand_ratio` x its width (height) on the left and
   right (top and bottom), clamped to the image;
2. make it square with the side of the clamped box's shorter side; along the
   longer side, start from the clamped box's centre and slide towards the
   face's centre, but never outside the clamped box;
3. resize so the short side is min_resolution, each side rounded to a multiple of 64.
The face mask is the face box grown 1.1x about its centre (Sonic's `area`),
clamped to the image: it is where the audio attention acts.

Unlike the official code (which rounds the four edges independently and can
end one pixel off square), the square here is exactly square and inside the image.
"""

from __future__ import annotations

import math

import numpy as np

from .types import Box

SIZE_MULTIPLE = 64
MASK_GROW = 1.1


def expand_crop(face_box: Box, image_size: tuple[int, int], expand_ratio: float) -> Box:
    """Square crop box (x0, y0, x1, y1) around `face_box` in an image of `image_size` = (width, height)."""
    width, height = image_size
    fx0, fy0, fx1, fy1 = (float(v) for v in face_box)
    fw, fh = fx1 - fx0, fy1 - fy0
    ex0, ey0 = max(fx0 - expand_ratio * fw, 0.0), max(fy0 - expand_ratio * fh, 0.0)
    ex1, ey1 = min(fx1 + expand_ratio * fw, float(width)), min(fy1 + expand_ratio * fh, float(height))
    ew, eh = ex1 - ex0, ey1 - ey0
    side = max(1, math.floor(min(ew, eh)))
    cx, cy = (ex0 + ex1) / 2, (ey0 + ey1) / 2
    slack = abs(ew - eh) / 2  # how far the square may slide along the longer side
    if ew > eh:
        cx += float(np.clip((fx0 + fx1) / 2 - cx, -slack, slack))
    else:
        cy += float(np.clip((fy0 + fy1) / 2 - cy, -slack, slack))
    x0 = int(np.clip(round(cx - side / 2), 0, max(0, width - side)))
    y0 = int(np.clip(round(cy - side / 2), 0, max(0, height - side)))
    return (x0, y0, x0 + min(side, width), y0 + min(side, height))


def target_size(crop_w: int, crop_h: int, min_resolution: int) -> tuple[int, int]:
    """(width, height) with the short side = min_resolution and both sides multiples of 64."""
    scale = min_resolution / min(crop_w, crop_h)
    w = max(SIZE_MULTIPLE, round(crop_w * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    h = max(SIZE_MULTIPLE, round(crop_h * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    return int(w), int(h)


def map_box(box: Box, crop_box: Box, size: tuple[int, int]) -> Box:
    """A box in original-image coordinates -> the same box in the resized crop of `size` = (w, h)."""
    cx0, cy0, cx1, cy1 = crop_box
    sx, sy = size[0] / (cx1 - cx0), size[1] / (cy1 - cy0)
    x0 = int(np.clip(round((box[0] - cx0) * sx), 0, size[0]))
    y0 = int(np.clip(round((box[1] - cy0) * sy), 0, size[1]))
    x1 = int(np.clip(round((box[2] - cx0) * sx), 0, size[0]))
    y1 = int(np.clip(round((box[3] - cy0) * sy), 0, size[1]))
    return (x0, y0, x1, y1)


def face_mask(face_box: Box, size: tuple[int, int], grow: float = MASK_GROW) -> np.ndarray:
    """float32 [H, W] mask, 1 inside the face box grown `grow`x about its centre (clamped), 0 elsewhere.

    Deviation from the official `area` rule, kept on purpose: its edges are truncated to int,
    ours are floored (start) and ceiled (end), so the mask covers the whole grown box and can be
    up to 1 px larger on an edge (README, "Differences from the official Sonic preprocessing").
    """
    width, height = size
    x0, y0, x1, y1 = (float(v) for v in face_box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * grow / 2, (y1 - y0) * grow / 2
    mx0, my0 = max(0, math.floor(cx - hw)), max(0, math.floor(cy - hh))
    mx1, my1 = min(width, math.ceil(cx + hw)), min(height, math.ceil(cy + hh))
    mask = np.zeros((height, width), dtype=np.float32)
    mask[my0:my1, mx0:mx1] = 1.0
    return mask
