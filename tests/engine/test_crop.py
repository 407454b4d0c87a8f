"""The official crop rule: expand by expand_ratio, square, clamp; resize to x64; mask the face 1.1x."""

from __future__ import annotations

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.crop import expand_crop, face_mask, map_box, target_size


def test_a_face_in_the_middle_grows_by_the_ratio_on_each_side():
    assert expand_crop((100, 100, 200, 200), (1000, 1000), 0.5) == (50, 50, 250, 250)
    assert expand_crop((100, 100, 200, 200), (1000, 1000), 0.0) == (100, 100, 200, 200)


def test_a_clamped_box_becomes_a_square_that_slides_towards_the_face():
    # Expanded: x 50..250, y -10..230 clamped to 0..230 -> 200 x 230. The square (side 200) starts
    # centred at y=115 and slides 5 px towards the face centre (y=110): within the 15 px of slack.
    assert expand_crop((100, 50, 200, 170), (400, 300), 0.5) == (50, 10, 250, 210)


def test_a_face_at_the_corner_stays_inside_the_image_and_square():
    box = expand_crop((0, 0, 80, 100), (640, 480), 0.5)
    x0, y0, x1, y1 = box
    assert x0 >= 0 and y0 >= 0 and x1 <= 640 and y1 <= 480
    assert x1 - x0 == y1 - y0
    assert x0 <= 0 and y0 <= 0  # the face's own corner is kept in the crop


@pytest.mark.parametrize("ratio", [0.0, 0.15, 0.5, 1.0, 2.0])
@pytest.mark.parametrize(
    "face", [(10, 20, 90, 120), (300, 100, 420, 260), (500, 380, 639, 479), (0, 0, 640, 480)]
)
def test_crops_are_square_inside_the_image_for_any_face_and_ratio(face, ratio):
    x0, y0, x1, y1 = expand_crop(face, (640, 480), ratio)
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    assert x1 - x0 == y1 - y0


@pytest.mark.parametrize(
    ("crop", "res", "expected"),
    [
        ((300, 300), 512, (512, 512)),
        ((640, 480), 512, (704, 512)),
        ((333, 777), 384, (384, 896)),
        ((64, 64), 1024, (1024, 1024)),
    ],
)
def test_target_size_has_the_short_side_at_min_resolution_in_multiples_of_64(crop, res, expected):
    w, h = target_size(*crop, res)
    assert (w, h) == expected
    assert w % 64 == 0 and h % 64 == 0 and min(w, h) == res


def test_map_box_follows_the_crop_and_resize():
    assert map_box((150, 150, 250, 250), (100, 100, 300, 300), (512, 512)) == (128, 128, 384, 384)


def test_face_mask_is_the_face_box_grown_1_1x_and_clamped():
    mask = face_mask((100, 100, 200, 200), (512, 512))
    assert mask.dtype == np.float32 and mask.shape == (512, 512)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (95, 205, 95, 205)
    assert set(np.unique(mask)) == {0.0, 1.0}
    edge = face_mask((0, 0, 100, 50), (256, 128))
    assert edge[0, 0] == 1 and edge.shape == (128, 256)
    assert np.count_nonzero(edge[0]) == 105
