"""The inside of an opening mouth.

Warping alone turns an open mouth into stretched lip skin. A real one shows a
dark cavity, the edge of the upper teeth just under the upper lip, and a
hint of tongue at the bottom of a wide opening. Colours come from the
portrait itself (lip colour for the cavity and tongue, the face's brightness
for the teeth) so the mouth sits in the photo's lighting.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face import MOUTH_INNER, MOUTH_OUTER
from .warp import MouthGap


@dataclass(frozen=True)
class MouthColours:
    cavity: np.ndarray  # [3] float32 RGB
    tongue: np.ndarray
    teeth: np.ndarray
    show_teeth: bool  # False when the portrait already shows its own teeth


def _polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def mouth_colours(image: np.ndarray, landmarks: np.ndarray, source_mouth_open: bool) -> MouthColours:
    """Cavity, tongue and teeth colours that match this portrait's lips and lighting."""
    h, w = image.shape[:2]
    lips = _polygon_mask((h, w), landmarks[MOUTH_OUTER]) & ~_polygon_mask((h, w), landmarks[MOUTH_INNER])
    pixels = image[lips].astype(np.float32)
    lip = pixels.mean(axis=0) if len(pixels) else np.array([150.0, 90.0, 90.0], dtype=np.float32)
    face = image[_polygon_mask((h, w), landmarks[[1, 2, 3, 31, 33, 35, 13, 14, 15, 28]])].astype(np.float32)
    skin = face.mean(axis=0) if len(face) else np.array([200.0, 150.0, 130.0], dtype=np.float32)
    cavity = np.array([0.30, 0.13, 0.13], dtype=np.float32) * lip + np.float32(4.0)
    tongue = np.array([0.85, 0.48, 0.50], dtype=np.float32) * lip
    # Teeth: ivory lit like the skin around them (warm light gives warm teeth, dim light dim ones).
    light = float(np.clip(skin.mean() / 150.0, 0.6, 1.25))
    ivory = np.array([235.0, 228.0, 212.0], dtype=np.float32)
    teeth = np.clip((0.65 * ivory + 0.35 * skin * 1.2) * light, 0.0, 245.0).astype(np.float32)
    return MouthColours(cavity=cavity, tongue=tongue, teeth=teeth, show_teeth=not source_mouth_open)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def paint_mouth(frame: np.ndarray, gap: MouthGap, colours: MouthColours) -> None:
    """Paint the opening described by `gap` into `frame` (uint8 [H, W, 3], in place)."""
    y0, y1, x0, x1 = gap.box
    a = np.float32(gap.half_width_px)
    depth, across, height = gap.depth, gap.across, gap.height_px
    from_top = depth * height  # pixels below the upper lip edge
    centre = 1.0 - across**2

    # Cavity: dark, darkest in the corners and just under the upper teeth (shadowed by the lip).
    shade = (0.65 + 0.45 * centre) * (0.8 + 0.2 * np.clip(depth * 2.0, 0.0, 1.0))
    colour = colours.cavity[None, None, :] * shade[..., None]
    # Tongue: the bottom of a wide opening.
    tongue = _smoothstep(0.55, 0.98, depth) * _smoothstep(0.25, 0.6, height / a) * centre
    colour = colour + (colours.tongue - colour) * (0.55 * tongue)[..., None]
    if colours.show_teeth:
        # Upper incisors: a band under the upper lip, shaded by the lip, fading towards the corners.
        band = np.float32(0.2) * a
        teeth = np.clip((band - from_top) / 1.5 + 0.5, 0.0, 1.0)
        teeth *= 1.0 - _smoothstep(0.25, 0.75, np.abs(across))
        teeth *= _smoothstep(0.06, 0.25, height / a)  # a slit shows shadow, not teeth
        shade = 0.7 + 0.3 * np.clip(from_top / np.maximum(1.0, 0.35 * band), 0.0, 1.0)  # lip shadow
        # Faint gaps between incisors (about 0.3 mouth half-widths apart) so the band reads as teeth.
        gaps = 0.93 + 0.07 * np.cos(across * np.float32(np.pi / 0.3)) ** 2
        tooth_colour = colours.teeth[None, None, :] * (shade * gaps * (0.75 + 0.25 * centre))[..., None]
        colour = colour + (tooth_colour - colour) * (0.9 * teeth)[..., None]
        # Lower teeth: a fainter edge above the lower lip on wide openings.
        lower = np.clip((0.1 * a - (height - from_top)) / 1.5 + 0.5, 0.0, 1.0)
        lower *= _smoothstep(0.45, 0.8, height / a) * (1.0 - _smoothstep(0.2, 0.6, np.abs(across)))
        colour = colour + (tooth_colour * 0.75 - colour) * (0.5 * lower)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    alpha = gap.alpha[..., None]
    frame[y0:y1, x0:x1] = np.clip(region + (colour - region) * alpha + 0.5, 0, 255).astype(np.uint8)
