"""Five kinds of face from one photo, for checking the lite mouth on more than one palette.

The lite mouth takes its colours from the face it animates, so it has to hold up
on a colour photo, a greyscale one, a pale stone statue, dark skin and a
flat-shaded cartoon. These tone transforms make all five from one portrait (the
tests and scripts/make_contact_sheet.py use scikit-image's astronaut) while the
landmarks of the original stay valid: no transform moves a pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_KINDS = ("photo", "greyscale", "pale", "dark", "stylised")


def face_variant(image: np.ndarray, kind: str) -> np.ndarray:
    """uint8 RGB `image` re-toned as one of FACE_KINDS (same size, same geometry)."""
    rgb = np.asarray(image, dtype=np.uint8)
    f = rgb.astype(np.float32)
    grey = f @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if kind == "photo":
        return rgb.copy()
    if kind == "greyscale":
        out = np.repeat(grey[..., None], 3, axis=2)
    elif kind == "pale":  # marble: almost no colour, light, low contrast, a cool tint
        stone = 150.0 + 0.45 * grey
        tint = np.array([0.99, 0.99, 1.0], dtype=np.float32)
        out = stone[..., None] * tint + 0.08 * (f - grey[..., None])
    elif kind == "dark":  # deep brown skin: darker, warmer, the highlights kept
        lin = (f / 255.0) ** 2.2
        lin = lin * np.array([0.30, 0.19, 0.13], dtype=np.float32)
        out = 255.0 * lin ** (1 / 2.2)
    elif kind == "stylised":  # cartoon: smoothed, posterised colours, dark outlines
        smooth = cv2.bilateralFilter(rgb, 9, 60, 7).astype(np.float32)
        out = np.round(smooth / 48.0) * 48.0
        edges = cv2.Canny(cv2.GaussianBlur(rgb, (5, 5), 0), 60, 140) > 0
        out[edges] *= 0.35
    else:
        raise ValueError(f"kind: unknown face kind {kind!r}; use one of {', '.join(FACE_KINDS)}")
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
