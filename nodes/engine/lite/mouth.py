"""The inside of an opening mouth, in the colours of the face it belongs to.

Warping alone turns an open mouth into stretched lip skin. A real one shows a
cavity in shadow (darkest under the upper lip and at the corners, a little
lighter towards the tongue), the edge of the upper teeth under the upper lip, a
hint of the lower teeth and the tongue at wide openings, and soft edges where
the lips curl inwards. All colours are darker, desaturated versions of the
portrait's own lip and skin tones: a photo gets a warm shadow, a greyscale
image a grey one, a marble statue a stone-coloured cavity; nothing in the
mouth is more colourful than the face around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face import MOUTH_INNER, MOUTH_OUTER
from .warp import MouthGap, Seam


@dataclass(frozen=True)
class MouthColours:
    cavity: np.ndarray  # [3] float32 RGB, the shadowed back of the mouth
    tongue: np.ndarray
    teeth: np.ndarray
    show_teeth: bool  # False when the portrait already shows its own upper teeth
    crease: np.ndarray  # where closed lips press together: the lip colour in shadow


def _polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _tone(colour: np.ndarray, brightness: float, saturation: float) -> np.ndarray:
    """`colour` with its chroma scaled by `saturation` and its brightness by `brightness`."""
    grey = float(colour @ np.array([0.299, 0.587, 0.114]))
    return ((grey + (colour - grey) * saturation) * brightness).astype(np.float32)


def mouth_colours(image: np.ndarray, landmarks: np.ndarray, source_mouth_open: bool) -> MouthColours:
    """Cavity, tongue and teeth colours from this portrait's lips and skin (see the module docstring)."""
    h, w = image.shape[:2]
    lips = _polygon_mask((h, w), landmarks[MOUTH_OUTER]) & ~_polygon_mask((h, w), landmarks[MOUTH_INNER])
    pixels = image[lips].astype(np.float32)
    lip = np.median(pixels, axis=0) if len(pixels) else np.array([150.0, 90.0, 90.0], dtype=np.float32)
    face = image[_polygon_mask((h, w), landmarks[[1, 2, 3, 31, 33, 35, 13, 14, 15, 28]])].astype(np.float32)
    skin = np.median(face, axis=0) if len(face) else np.array([200.0, 150.0, 130.0], dtype=np.float32)
    cavity = _tone(0.7 * lip + 0.3 * skin, 0.3, 0.55) + np.float32(3.0)
    tongue = _tone(lip, 0.62, 0.7)
    # Teeth: the skin's own light, nearly colourless (a statue's teeth are its stone).
    skin_luma = float(skin @ np.array([0.299, 0.587, 0.114]))
    teeth = _tone(skin, float(np.clip(215.0 / max(skin_luma, 1.0), 0.9, 1.35)), 0.25)
    teeth = np.clip(teeth, 0.0, 240.0).astype(np.float32)
    crease = _tone(lip, 0.72, 0.9)
    return MouthColours(
        cavity=cavity, tongue=tongue, teeth=teeth, show_teeth=not source_mouth_open, crease=crease
    )


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blend(colour: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return colour + (target - colour) * weight[..., None]


def paint_mouth(frame: np.ndarray, gap: MouthGap, colours: MouthColours) -> None:
    """Paint the opening described by `gap` into `frame` (uint8 [H, W, 3], in place)."""
    y0, y1, x0, x1 = gap.box
    a = np.float32(gap.half_width_px)
    depth, across, height = gap.depth, gap.across, gap.height_px
    from_top = depth * height  # pixels below the upper lip edge
    from_bottom = height - from_top  # pixels above the lower lip edge
    centre = 1.0 - across**2
    wide = _smoothstep(0.12, 0.45, height / a)

    # Cavity: a vertical gradient (deep shadow under the upper lip, a little light towards the
    # tongue), darker at the corners.
    shade = (0.55 + 0.45 * centre) * (0.7 + 0.5 * _smoothstep(0.1, 1.0, depth))
    colour = colours.cavity[None, None, :] * shade[..., None]
    # Tongue: a rounded hump rising from the lower lip in the middle of a wide opening.
    hump = 0.38 * height * np.clip(1.0 - (across / 0.65) ** 2, 0.0, 1.0)
    tongue = np.clip((hump - from_bottom) / np.maximum(1.5, 0.08 * a) + 0.5, 0.0, 1.0) * wide
    tongue_shade = 0.75 + 0.25 * np.clip(from_bottom / np.maximum(hump, 1.0), 0.0, 1.0)
    colour = _blend(colour, colours.tongue * tongue_shade[..., None], 0.8 * tongue)
    teeth_colour = colours.teeth[None, None, :] * (0.72 + 0.28 * centre)[..., None]
    if colours.show_teeth:
        # Upper incisors: a band under the upper lip, in the lip's shadow at its top, fading
        # towards the corners, with faint gaps between the teeth so the band reads as teeth.
        band = np.float32(0.2) * a
        teeth = np.clip((band - from_top) / 1.5 + 0.5, 0.0, 1.0)
        teeth *= 1.0 - _smoothstep(0.25, 0.75, np.abs(across))
        teeth *= _smoothstep(0.06, 0.25, height / a)  # a slit shows shadow, not teeth
        lip_shadow = 0.62 + 0.38 * np.clip(from_top / np.maximum(1.0, 0.5 * band), 0.0, 1.0)
        gaps = 0.92 + 0.08 * np.cos(across * np.float32(np.pi / 0.3)) ** 2
        colour = _blend(colour, teeth_colour * (lip_shadow * gaps)[..., None], 0.92 * teeth)
    # Lower incisors: the edge just above the lower lip, only in the middle of a wide opening,
    # dimmer than the upper teeth (the tongue and the lower lip shade them).
    lower_band = np.float32(0.09) * a
    lower = np.clip((lower_band - from_bottom) / 1.2 + 0.5, 0.0, 1.0)
    lower *= wide * (1.0 - _smoothstep(0.15, 0.5, np.abs(across)))
    colour = _blend(colour, teeth_colour * 0.7, 0.6 * lower)
    # Where the lips curl inwards they shade the mouth's edge.
    rim = np.clip(np.minimum(from_top, from_bottom) / np.maximum(1.5, 0.06 * a), 0.0, 1.0)
    colour = colour * (0.75 + 0.25 * rim)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    alpha = gap.alpha[..., None]
    frame[y0:y1, x0:x1] = np.clip(region + (colour - region) * alpha + 0.5, 0, 255).astype(np.uint8)


def shade_seam(frame: np.ndarray, seam: Seam, colours: MouthColours) -> None:
    """Shade where closed lips meet (in place): nothing there may be brighter than the lips'
    shadowed colour, so the portrait's lip highlight or teeth cannot show as a bright line."""
    y0, y1, x0, x1 = seam.box
    region = frame[y0:y1, x0:x1].astype(np.float32)
    target = np.minimum(region, colours.crease[None, None, :])
    out = region + (target - region) * seam.weight[..., None]
    frame[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
