"""The inside of an opening mouth, in the colours of the face it belongs to.

Warping alone turns an open mouth into stretched lip skin. A real one shows a
cavity in shadow (darkest under the upper lip and at the corners, a little
lighter towards the tongue), the edge of the upper teeth under the upper lip, a
hint of the lower teeth and the tongue at wide openings, and soft edges where
the lips curl inwards. All colours come from the portrait itself: the cavity
and tongue from its lip and skin tones, darkened (a photo gets a warm shadow,
a greyscale image a grey one, a marble statue a stone-coloured cavity; nothing
in the mouth is more colourful than the face around it), teeth it does not
show from its own eye whites, and the fine grain laid over it all from its
lips, so that the mouth is not flat paint in a photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..face import EYE_LEFT, EYE_RIGHT, MOUTH_INNER, MOUTH_OUTER
from .warp import MouthGap, Seam


@dataclass(frozen=True)
class MouthColours:
    cavity: np.ndarray  # [3] float32 RGB, the shadowed back of the mouth
    tongue: np.ndarray
    teeth: np.ndarray
    show_teeth: bool  # False when the portrait already shows its own upper teeth
    crease: np.ndarray  # where closed lips press together: the lip colour in shadow
    # The portrait's own fine texture (relative luma detail of its lips, about zero-mean, float32
    # [h, w]): laid over the painted mouth so it has the grain of the photo, not flat paint.
    detail: np.ndarray | None = None


def _polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _tone(colour: np.ndarray, brightness: float, saturation: float) -> np.ndarray:
    """`colour` with its chroma scaled by `saturation` and its brightness by `brightness`."""
    grey = float(colour @ _LUMA)
    return ((grey + (colour - grey) * saturation) * brightness).astype(np.float32)


def _whites(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The light, colourless part of the pixels under `mask` (the whites of the eyes, the teeth
    of an open mouth): the colour white takes in this portrait's light. None if too few."""
    pixels = image[mask].astype(np.float32)
    if len(pixels) < 12:
        return None
    luma = pixels @ _LUMA
    chroma = pixels.max(axis=1) - pixels.min(axis=1)
    light = pixels[(luma >= np.percentile(luma, 70)) & (chroma <= np.percentile(chroma, 60))]
    return np.median(light, axis=0) if len(light) >= 4 else None


def _lip_detail(image: np.ndarray, landmarks: np.ndarray, lips: np.ndarray) -> np.ndarray | None:
    """Relative fine luma detail (high-pass / local brightness) over the lips' box, lips only
    (elsewhere mirrored in from the nearest lip rows), clipped so outlines cannot dominate."""
    xs, ys = np.flatnonzero(lips.any(axis=0)), np.flatnonzero(lips.any(axis=1))
    if xs.size < 8 or ys.size < 4:
        return None
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    luma = image[y0:y1, x0:x1].astype(np.float32) @ _LUMA
    base = cv2.GaussianBlur(luma, (0, 0), 1.6)
    detail = (luma - base) / np.maximum(base, 8.0)
    inside = lips[y0:y1, x0:x1]
    # Only rows that are mostly lip: the strip of the lower lip is the richest and cleanest.
    rows = inside.mean(axis=1) > 0.5
    if rows.sum() < 3:
        return None
    strip = detail[rows][:, inside[rows].mean(axis=0) > 0.5]
    if strip.shape[1] < 8:
        return None
    # Without what runs the strip's whole height (lip lines, a central crease): those would show
    # as stripes down the mouth; the grain stays.
    strip = np.clip(strip - strip.mean(axis=0, keepdims=True), -0.2, 0.2)
    # Lips with deep lines (a man's, a lipstick's) would stripe the mouth: at most a photo's grain.
    strip *= min(1.0, 0.035 / max(float(strip.std()), 1e-6))
    return strip.astype(np.float32)


def mouth_colours(image: np.ndarray, landmarks: np.ndarray, source_mouth_open: bool) -> MouthColours:
    """Cavity, tongue and teeth colours from this portrait's lips, skin and whites (see the module
    docstring)."""
    h, w = image.shape[:2]
    inner = _polygon_mask((h, w), landmarks[MOUTH_INNER])
    lips = _polygon_mask((h, w), landmarks[MOUTH_OUTER]) & ~inner
    pixels = image[lips].astype(np.float32)
    lip = np.median(pixels, axis=0) if len(pixels) else np.array([150.0, 90.0, 90.0], dtype=np.float32)
    face = image[_polygon_mask((h, w), landmarks[[1, 2, 3, 31, 33, 35, 13, 14, 15, 28]])].astype(np.float32)
    skin = np.median(face, axis=0) if len(face) else np.array([200.0, 150.0, 130.0], dtype=np.float32)
    cavity = _tone(0.8 * lip + 0.2 * skin, 0.32, 1.0) + np.float32(2.0)
    tongue = _tone(lip, 0.8, 1.3)
    # Teeth: the portrait's own teeth where it shows them, else the whites of its eyes (white in
    # this light: a statue's are its stone), a little darker in the mouth's shadow.
    eyes = _polygon_mask((h, w), landmarks[EYE_RIGHT]) | _polygon_mask((h, w), landmarks[EYE_LEFT])
    white = _whites(image, inner) if source_mouth_open else None
    if white is None:  # the eyes' whites sit in the shadow of the lids and brows: lit teeth are lighter
        white = _whites(image, eyes)
        white = None if white is None else white * np.float32(1.12)
    skin_luma = float(skin @ _LUMA)
    if white is None or float(white @ _LUMA) < float(lip @ _LUMA):
        white = _tone(skin, float(np.clip(215.0 / max(skin_luma, 1.0), 0.9, 1.35)), 0.25)
    teeth = _tone(0.85 * white + 0.15 * skin, 1.0, 0.6)
    teeth = np.clip(teeth, 0.0, 235.0).astype(np.float32)
    crease = _tone(lip, 0.72, 0.9)
    return MouthColours(
        cavity=cavity,
        tongue=tongue,
        teeth=teeth,
        show_teeth=not source_mouth_open,
        crease=crease,
        detail=_lip_detail(image, landmarks, lips),
    )


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blend(colour: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return colour + (target - colour) * weight[..., None]


# Upper teeth across the mouth (|across|, mouth half-widths): where each visible tooth ends (central
# incisor, lateral incisor, canine, first premolar: narrower as the arch turns away) and how far
# below the upper lip it reaches.
_TOOTH_EDGES = np.array([0.0, 0.29, 0.51, 0.68, 0.8], dtype=np.float32)
_TOOTH_LENGTH = np.array([0.2, 0.165, 0.15, 0.1], dtype=np.float32)


_ACROSS_STEPS = 513  # the across-the-mouth profiles below are tabulated at this many points


@lru_cache(maxsize=16)
def _across_profiles(a_px: int) -> dict[str, np.ndarray]:
    """Everything in the painting that depends only on the position across the mouth, tabulated
    once per mouth size (`a_px`: half-width in whole pixels) over across = -1..1: per frame a
    table look-up instead of a dozen array operations (the painter runs on every frame)."""
    a = float(max(a_px, 1))
    x = np.linspace(-1.0, 1.0, _ACROSS_STEPS)
    ax = np.abs(x)
    centre = 1.0 - x * x
    # Upper teeth: which tooth, how far to the nearest gap between two of them.
    pos = np.interp(ax, _TOOTH_EDGES, np.arange(len(_TOOTH_EDGES)))
    k = np.minimum(pos.astype(int), len(_TOOTH_LENGTH) - 1)
    frac = pos - k
    to_gap = np.minimum(frac, 1.0 - frac) * np.diff(_TOOTH_EDGES)[k] * a  # pixels
    # Rounded incisal corners: a tooth is a little shorter next to its neighbours.
    length = _TOOTH_LENGTH[k] * a * (1.0 - 0.15 * np.exp(-((to_gap / max(0.05 * a, 1.0)) ** 2)))
    gaps = 1.0 - 0.2 * np.exp(-((to_gap / max(0.012 * a, 0.6)) ** 2))
    lower_band = 0.06 * a * np.clip(1.0 - (ax / 0.34) ** 2, 0.0, 1.0)
    tables = {
        "cavity": 0.5 + 0.5 * np.sqrt(centre),  # the corners in the cheeks' shadow
        "hump": np.clip(1.0 - (x / 0.72) ** 2, 0.0, 1.0),  # the tongue's outline
        "tongue": (0.8 + 0.2 * centre) * (1.0 - 0.12 * np.exp(-((x / 0.07) ** 2))),  # and its groove
        "teeth_length": length,
        "teeth_cover": 1.0 - _smoothstep(0.62, 0.82, ax),
        "teeth_shade": gaps * (1.0 - 0.5 * ax * ax),  # the arch turning into the dark
        "lower_band": np.where(lower_band > 0.5, lower_band, -1.0),
        "lower_gaps": 1.0 - 0.5 * np.cos(ax * (np.pi / 0.16)) ** 8,
    }
    return {name: t.astype(np.float32) for name, t in tables.items()}


def _upper_teeth(profiles, index: np.ndarray, from_top: np.ndarray, height: np.ndarray, a: np.float32):
    """Coverage (0..1) and shading of the upper teeth under the upper lip."""
    length = np.take(profiles["teeth_length"], index)
    cover = np.clip((length - from_top) * np.float32(1 / 1.2) + 0.5, 0.0, 1.0)
    cover *= np.take(profiles["teeth_cover"], index)
    cover *= _smoothstep(0.03, 0.12, height / a)  # a slit shows shadow, not teeth
    # Shade: the upper lip's shadow at the top, the arch, the gaps (see _across_profiles), the edge
    # a touch translucent.
    down = from_top / np.maximum(length, 1.0)
    shade = (0.7 + 0.3 * _smoothstep(0.0, 0.45, down)) * (1.0 - 0.1 * _smoothstep(0.75, 1.0, down))
    return cover, shade * np.take(profiles["teeth_shade"], index)


def _texture(detail: np.ndarray | None, across: np.ndarray, from_bottom: np.ndarray, a: np.float32):
    """The portrait's lip detail laid over the mouth, moving with the jaw (see MouthColours)."""
    if detail is None:
        return None
    dh, dw = detail.shape
    map_x = across * a + np.float32(dw / 2.0)
    map_y = from_bottom + np.float32(0.0)
    return cv2.remap(detail, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _rows(near: np.ndarray) -> slice:
    """The rows of the gap box where `near` ([h, w] bool) holds anywhere: the layers below are
    drawn only there (teeth under the upper lip, the tongue above the lower), which is most of
    what keeps painting cheap."""
    rows = np.flatnonzero(near.any(axis=1))
    return slice(int(rows[0]), int(rows[-1]) + 1) if rows.size else slice(0, 0)


def paint_mouth(frame: np.ndarray, gap: MouthGap, colours: MouthColours) -> None:
    """Paint the opening described by `gap` into `frame` (uint8 [H, W, 3], in place)."""
    y0, y1, x0, x1 = gap.box
    f32 = np.float32
    a = f32(gap.half_width_px)
    profiles = _across_profiles(int(round(float(a))))
    index = ((gap.across + 1.0) * f32((_ACROSS_STEPS - 1) / 2.0) + 0.5).astype(np.intp)
    depth, across, height = gap.depth, gap.across, gap.height_px
    from_top = depth * height  # pixels below the upper lip edge
    from_bottom = height - from_top  # pixels above the lower lip edge
    wide = _smoothstep(0.12, 0.5, height / a)

    # Cavity: deepest shadow under the upper lip and teeth, a little light further down where the
    # light from the opening reaches, darker towards the corners (the cheeks shade them).
    shade = np.take(profiles["cavity"], index) * (0.6 + 0.55 * _smoothstep(0.15, 1.0, depth))
    colour = colours.cavity[None, None, :] * shade[..., None]
    grain = np.full(shade.shape, 0.9, dtype=np.float32)  # how much of the lips' grain shows

    # Tongue: a rounded hump rising from behind the lower teeth in a wide opening, lit at the
    # front, receding into the shadow at its top; a faint groove down its middle.
    soft = f32(max(1.5, 0.09 * float(a)))
    rows = _rows((from_bottom < 0.52 * height + soft) & (wide > 0.0))
    if rows.stop > rows.start:
        idx, fb, w_ = index[rows], from_bottom[rows], wide[rows]
        hump = height[rows] * (0.22 + 0.3 * w_) * np.take(profiles["hump"], idx)
        tongue = _smoothstep(-1.0, 1.0, (hump - fb) / soft) * w_
        lit = np.clip(1.0 - fb / np.maximum(hump, 1.0), 0.0, 1.0)
        tongue_shade = (0.6 + 0.4 * lit) * np.take(profiles["tongue"], idx)
        colour[rows] = _blend(colour[rows], colours.tongue * tongue_shade[..., None], 0.9 * tongue)
        grain[rows] += 0.3 * tongue
        # Lower incisors: just their edges above the lower lip, in the middle of a wide opening,
        # in the lower lip's shadow, with the gaps between them.
        band = np.take(profiles["lower_band"], idx)
        lower = np.clip(band - fb + 0.5, 0.0, 1.0) * w_ * np.take(profiles["lower_gaps"], idx)
        lower_shade = 0.55 + 0.2 * np.clip(fb / np.maximum(band, 1.0), 0.0, 1.0)
        colour[rows] = _blend(colour[rows], colours.teeth * lower_shade[..., None], 0.6 * lower)
    if colours.show_teeth:
        rows = _rows(from_top < float(_TOOTH_LENGTH.max()) * a + 1.5)
        if rows.stop > rows.start:
            cover, teeth_shade = _upper_teeth(profiles, index[rows], from_top[rows], height[rows], a)
            colour[rows] = _blend(colour[rows], colours.teeth * teeth_shade[..., None], 0.95 * cover)
            grain[rows] *= 1.0 - 0.8 * cover  # enamel, not tissue: hardly any grain
    # Where the lips curl inwards they shade the mouth's edge; over it all, the lips' grain.
    rim = np.clip(np.minimum(from_top, from_bottom) * f32(1.0 / max(1.5, 0.06 * float(a))), 0.0, 1.0)
    light = 0.8 + 0.2 * rim
    texture = _texture(colours.detail, across, from_bottom, a)
    if texture is not None:
        light *= 1.0 + texture * grain
    colour *= light[..., None]
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
