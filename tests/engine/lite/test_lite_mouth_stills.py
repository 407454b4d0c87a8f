"""Still frames of the lite mouth, measured: five kinds of face at closed / half / wide opening.

What gives a synthetic mouth away, as numbers a regression would change:
- the inside of the mouth must be in the face's own palette (a grey photo gets a
  grey cavity, a statue a stone one; never more colourful than the face, and of
  the face's hue);
- a closed mouth must not show a bright line along the seam;
- the inner lip contour must be soft (anti-aliased over a couple of pixels), not a
  hard cut-out edge.
scripts/make_contact_sheet.py renders the same frames for the eye (docs/lite_mouths.png).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from comfyui_sonic.nodes.engine.face import MOUTH_INNER, MOUTH_OUTER
from comfyui_sonic.nodes.engine.lite.backend import _JAW, _LIP_RAISE, closing_for, mouth_frame
from comfyui_sonic.nodes.engine.lite.faces import FACE_KINDS, face_variant
from comfyui_sonic.nodes.engine.lite.warp import FacePose, FaceRig

from .lite_clips import prepared

OPENINGS = {"closed": 0.0, "half": 0.5, "wide": 1.0}


@pytest.fixture(scope="module")
def photo():
    data = prepared(1.0, resolution=512)
    return data.image, np.asarray(data.landmarks, dtype=np.float32)


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def chroma(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(np.float32)
    return p.max(axis=-1) - p.min(axis=-1)


def polygon(shape, points) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def lip_pixels(image, points) -> np.ndarray:
    return image[polygon(image.shape, points[MOUTH_OUTER]) & ~polygon(image.shape, points[MOUTH_INNER])]


def face_pixels(image, points) -> np.ndarray:
    return image[polygon(image.shape, points[[1, 2, 3, 31, 33, 35, 13, 14, 15, 28]])]


def painted_interior(image, points, opening):
    """The frame at `opening` and its fully painted inner-mouth pixels."""
    rig = FaceRig(image.shape[:2], points)
    gap = rig.backward_map(
        FacePose(jaw=_JAW * opening - closing_for(rig.source_gap, opening), lip_raise=_LIP_RAISE * opening)
    ).gap
    frame = mouth_frame(image, points, opening)
    y0, y1, x0, x1 = gap.box
    return frame, frame[y0:y1, x0:x1][gap.alpha >= 0.99], gap


def hue_deg(rgb: np.ndarray) -> float:
    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2HSV_FULL)
    return float(hsv[0, 0, 0]) * 360.0 / 256.0


def closed_seam_peak(image, points) -> tuple[float, float]:
    """(brightest pixel along the closed seam, bright end of the lips around it), luma."""
    frame = mouth_frame(image, points, 0.0)
    upper, lower = points[[60, 61, 62, 63, 64]], points[[60, 67, 66, 65, 64]]
    y = luma(frame)
    seam = []
    for x in range(int(np.ceil(points[61, 0])), int(points[63, 0]) + 1):
        top = np.interp(x, upper[:, 0], upper[:, 1])
        bottom = np.interp(x, lower[:, 0], lower[:, 1])
        seam.append(y[int(np.floor(min(top, bottom))) - 1 : int(np.ceil(max(top, bottom))) + 2, x].max())
    lips = np.percentile(luma(lip_pixels(frame, points)), 95)
    return float(max(seam)), float(lips)


def edge_step(frame, gap, points) -> float:
    """Largest one-pixel luma step across the lower inner lip edge, as a fraction of the
    contrast between the mouth and the lip (1: a hard cut-out edge)."""
    y0, _, x0, _ = gap.box
    col = int(np.argmax(gap.height_px.max(axis=0)))
    rows = np.flatnonzero(gap.alpha[:, col] > 0)
    bottom = y0 + int(rows[-1])
    profile = luma(frame)[bottom - 6 : bottom + 5, x0 + col]
    return float(np.abs(np.diff(profile)).max() / max(1.0, np.ptp(profile)))


@pytest.mark.parametrize("kind", FACE_KINDS)
def test_a_closed_mouth_has_no_bright_seam(photo, kind):
    """The astronaut smiles with her teeth showing: shut, no tooth edge or lip highlight may
    show as a bright line where the lips meet."""
    image, points = face_variant(photo[0], kind), photo[1]
    peak, lips = closed_seam_peak(image, points)
    assert peak <= lips + 2.0, f"{kind}: seam peak {peak:.0f} brighter than the lips {lips:.0f}"


@pytest.mark.parametrize("kind", FACE_KINDS)
@pytest.mark.parametrize("opening", ["half", "wide"])
def test_the_inner_mouth_is_in_the_faces_own_palette(photo, kind, opening):
    image, points = face_variant(photo[0], kind), photo[1]
    _, inside, _ = painted_interior(image, points, OPENINGS[opening])
    palette = np.concatenate([lip_pixels(image, points), face_pixels(image, points)])
    assert inside.size
    assert np.percentile(chroma(inside), 95) <= np.percentile(chroma(palette), 95) + 4.0
    assert luma(inside).mean() < luma(palette).mean()  # a shadow, darker than the face
    if np.median(chroma(palette)) > 20:  # a coloured face: the mouth has the hue of its lips or skin
        mouth_hue = hue_deg(inside.mean(axis=0))
        tones = (np.median(lip_pixels(image, points), axis=0), np.median(face_pixels(image, points), axis=0))
        assert min(abs((mouth_hue - hue_deg(t) + 180.0) % 360.0 - 180.0) for t in tones) <= 30.0


@pytest.mark.parametrize("kind", FACE_KINDS)
@pytest.mark.parametrize("opening", ["half", "wide"])
def test_the_inner_lip_edge_is_soft(photo, kind, opening):
    image, points = face_variant(photo[0], kind), photo[1]
    frame, _, gap = painted_interior(image, points, OPENINGS[opening])
    assert edge_step(frame, gap, points) <= 0.55


def test_the_jaw_moves_the_chin_without_stretching_it(photo):
    """Lower lip and chin drop together (the chin keeps its height); only the neck stretches."""
    image, points = photo
    rig = FaceRig(image.shape[:2], points)
    frame_map = rig.backward_map(FacePose(jaw=0.6))
    y0, _, x0, _ = frame_map.box
    dy = frame_map.map[..., 1] - rig.grid[y0:, x0:][: frame_map.map.shape[0], : frame_map.map.shape[1], 1]
    x = int(round(points[8, 0])) - x0
    lip_y = int(round(points[57, 1])) + 2
    chin_y = int(round(points[8, 1]))
    drop = np.hypot(*(points[54] - points[48])) / 2.0 * 0.6
    # Output pixels just below where the lip and the chin moved sample them back: same shift.
    at_lip = -dy[lip_y + int(drop) - y0, x]
    at_chin = -dy[chin_y + int(drop) - y0 - 2, x]
    assert abs(at_lip - at_chin) <= 0.2 * drop  # the old stretch moved the chin 30% more
    far_below = chin_y + int(drop) + int(3.5 * drop) - y0
    if far_below < dy.shape[0]:
        assert -dy[far_below, x] < 0.5 * drop  # fades into the neck


def test_face_variants_keep_the_geometry_and_change_the_palette(photo):
    image = photo[0]
    assert chroma(face_variant(image, "greyscale")).max() == 0
    assert luma(face_variant(image, "pale")).mean() > luma(image).mean()
    assert luma(face_variant(image, "dark")).mean() < 0.7 * luma(image).mean()
    assert all(face_variant(image, k).shape == image.shape for k in FACE_KINDS)
    with pytest.raises(ValueError, match="kind: unknown"):
        face_variant(image, "oil painting")


# --- inside a wide-open mouth: shaded, textured, a tongue; teeth where the portrait has none -------


def interior_layers(image, points, opening):
    """Luma of the painted interior, and masks of its upper and lower middle (away from the lips)."""
    frame, _, gap = painted_interior(image, points, opening)
    y0, y1, x0, x1 = gap.box
    y = luma(frame)[y0:y1, x0:x1]
    core = cv2.erode((gap.alpha >= 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    middle = core & (np.abs(gap.across) < 0.4)
    return y, core, middle & (gap.depth < 0.45), middle & (gap.depth > 0.7)


@pytest.mark.parametrize("kind", FACE_KINDS)
def test_a_wide_mouth_is_shaded_and_shows_a_tongue(photo, kind):
    """Not a flat dark fill: deep shadow under the upper lip, the lit tongue low in the middle,
    as coloured (relative to its brightness) as the lips it is the colour of."""
    image, points = face_variant(photo[0], kind), photo[1]
    y, core, upper, lower = interior_layers(image, points, OPENINGS["wide"])
    frame, _, gap = painted_interior(image, points, OPENINGS["wide"])
    y0, y1, x0, x1 = gap.box
    tongue = frame[y0:y1, x0:x1][lower].astype(np.float32).mean(axis=0)
    lip = np.median(lip_pixels(image, points), axis=0).astype(np.float32)
    saturation = lambda c: float((c.max() - c.min()) / max(c.max(), 1.0))  # noqa: E731
    if saturation(lip) > 0.1:
        assert saturation(tongue) >= 0.9 * saturation(lip), f"{kind}: a grey tongue under coloured lips"
    assert upper.sum() > 20 and lower.sum() > 20
    assert y[lower].mean() >= 1.5 * y[upper].mean(), (
        f"{kind}: tongue {y[lower].mean():.0f} vs {y[upper].mean():.0f}"
    )
    assert np.std(y[core]) >= 0.2 * y[core].mean()


@pytest.fixture(scope="module")
def closed_portrait(photo):
    """The astronaut with her lips shut (rendered closed, landmarks found again): a portrait that
    shows no teeth, so the lite mouth has to draw them."""
    from comfyui_sonic.nodes.engine.face import default_analyzer

    closed = mouth_frame(photo[0], photo[1], 0.0)
    analyzer = default_analyzer()
    points = np.asarray(analyzer.landmarks(closed, analyzer.detect(closed)[0]), dtype=np.float32)
    assert not FaceRig(closed.shape[:2], points).source_mouth_open
    return closed, points


@pytest.mark.parametrize("opening", ["half", "wide"])
def test_a_portrait_without_teeth_gets_upper_teeth_with_gaps(closed_portrait, opening):
    """Under the upper lip: a light band (as light as the lips at least), and darker gaps between
    the teeth along it; below it the cavity is dark."""
    image, points = closed_portrait
    frame, _, gap = painted_interior(image, points, OPENINGS[opening])
    y0, _, x0, _ = gap.box
    y = luma(frame)
    a = gap.half_width_px
    lips = np.median(luma(lip_pixels(image, points)))
    centre = int(np.argmin(np.abs(gap.across[gap.alpha.shape[0] // 2])))
    rows = np.flatnonzero(gap.alpha[:, centre] >= 0.99)
    band_row = y0 + rows[0] + max(1, int(0.08 * a))
    row = np.array([y[band_row, x0 + c] for c in range(gap.alpha.shape[1])])
    across = gap.across[band_row - y0]
    middle = np.abs(across) < 0.45
    assert np.percentile(row[middle], 75) >= 0.9 * lips, (
        f"teeth {np.percentile(row[middle], 75):.0f} vs lips {lips:.0f}"
    )
    for edge in (-0.29, 0.29):  # between the central and lateral incisors
        near = np.abs(across - edge) < 0.03
        around = (np.abs(across - edge) > 0.06) & (np.abs(across - edge) < 0.14)
        assert row[near].min() < row[around].mean() - 2.0, f"no gap at {edge}"
    assert y[y0 + rows[-1] - 2, x0 + centre] < 0.8 * np.percentile(row[middle], 75) or opening == "half"


# --- the lips of the face, kept ---------------------------------------------------------------------


def band_rows(frame_map, x: int, top: float, bottom: float) -> np.ndarray:
    """Output rows in column x that sample the source between rows top and bottom (a lip band;
    the rows a pixel or so from the lip's inner edge left out: the opening samples those)."""
    y0, _, x0, _ = frame_map.box
    src_y = frame_map.map[:, x - x0, 1]
    return y0 + np.flatnonzero((src_y >= top) & (src_y <= bottom))


INNER_MARGIN = 1.5  # px


@pytest.mark.parametrize("opening", ["half", "wide"])
def test_the_lips_keep_their_thickness_as_the_mouth_opens(photo, opening):
    """The lips are the portrait's lips, moved, not stretched or painted over: in the middle of the
    mouth the output shows each lip band as thick as in the source (within 12% or a pixel), and
    the painted opening covers at most its soft edge of it."""
    image, points = photo
    o = OPENINGS[opening]
    rig = FaceRig(image.shape[:2], points, image)
    pose = FacePose(jaw=_JAW * o - closing_for(rig.source_gap, o), lip_raise=_LIP_RAISE * o)
    frame_map = rig.backward_map(pose)
    gap = frame_map.gap
    x = int(round(points[[62, 66], 0].mean()))
    edge = max(1.0, 0.06 * gap.half_width_px)
    for name, (top, bottom) in {
        "upper": (points[51, 1], points[62, 1] - INNER_MARGIN),
        "lower": (points[66, 1] + INNER_MARGIN, points[57, 1]),
    }.items():
        rows = band_rows(frame_map, x, top, bottom)
        thick = bottom - top
        assert abs(len(rows) - thick) <= max(1.0, 0.12 * thick), f"{name}: {len(rows)} rows vs {thick:.1f}"
        gy0, gy1, gx0, _ = gap.box
        painted = [r for r in rows if gy0 <= r < gy1 and gap.alpha[r - gy0, x - gx0] > 0.5]
        assert len(painted) <= edge, f"{name} lip painted over on {len(painted)} rows"


# --- the neck stretches, the collar stays --------------------------------------------------------------


def collar_rows(image: np.ndarray, source: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per column across the neck, the row where the astronaut's dark suit starts (sub-pixel: where
    the luma, going up from inside the suit, crosses half way to the skin above it in `source`)."""
    y = cv2.GaussianBlur(luma(image), (0, 0), 1.0)
    ys = cv2.GaussianBlur(luma(source), (0, 0), 1.0)
    start = int(points[8, 1]) + 4
    rows = []
    for x in range(int(points[6, 0]), int(points[10, 0]) + 1):
        col = ys[start:, x]
        top = start + int(np.flatnonzero(col < 0.5 * (col[0] + 30.0))[0])  # the suit in the source
        level = 0.5 * (ys[top - 6, x] + ys[top + 12, x])
        r = top + 12
        while r > start and y[r - 1, x] < level:
            r -= 1
        rows.append(r - (level - y[r, x]) / max(1e-3, y[r - 1, x] - y[r, x]))
    return np.array(rows)


@pytest.mark.parametrize("opening", [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
def test_the_collar_does_not_move_with_the_jaw(photo, opening):
    """The astronaut's suit starts a third to a half of a mouth-width below her chin: the jaw's
    motion must fade out above it at every opening (closed, when her smiling mouth is pulled shut,
    too), so the collar neither follows the chin nor bends into a wave along its length. Only at
    the widest, the chin then closer to the collar than the neck can be squeezed, pushes it down a
    little (the old jaw moved it 20 px)."""
    image, points = photo
    before = collar_rows(image, image, points)
    after = collar_rows(mouth_frame(image, points, opening), image, points)
    assert np.abs(after - before).max() <= (3.0 if opening == 1.0 else 1.5), (
        f"collar moved {np.abs(after - before).max():.1f} px"
    )
    ripple = np.abs(np.diff(after - before, 2)).max()
    assert ripple <= 0.5, f"ripple {ripple:.2f} px along the collar"
