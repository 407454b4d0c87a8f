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
