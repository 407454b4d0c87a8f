"""The rig's maps: nothing moves at rest, the jaw drops, the lids close."""

from __future__ import annotations

import pytest
from comfyui_sonic.nodes.engine.lite.warp import FacePose, FaceRig

from .lite_clips import prepared


@pytest.fixture(scope="module")
def rig():
    data = prepared(1.0, resolution=256)
    return FaceRig(data.image.shape[:2], data.landmarks), data.landmarks


def sampled_from(frame_map, xy):
    """Where the output pixel at xy takes its colour from."""
    y0, _, x0, _ = frame_map.box
    x, y = int(round(xy[0])), int(round(xy[1]))
    return frame_map.map[y - y0, x - x0]


def test_the_rest_pose_is_the_input_image(rig):
    face, _ = rig
    assert face.backward_map(FacePose()) is None


def test_an_open_jaw_moves_the_chin_down_and_parts_the_lips(rig):
    face, points = rig
    frame_map = face.backward_map(FacePose(jaw=0.5, lip_raise=0.1))
    chin = points[8]
    below = chin + [0, 6]
    assert sampled_from(frame_map, below)[1] < below[1] - 3  # the pixel below the chin now shows the chin
    gap = frame_map.gap
    assert gap is not None and gap.alpha.max() == 1.0
    y0, y1, x0, x1 = gap.box
    centre = points[[62, 66]].mean(axis=0)
    assert x0 <= centre[0] < x1 and y0 <= centre[1] < y1


def test_a_blink_shows_eyelid_skin_over_the_eye(rig):
    face, points = rig
    frame_map = face.backward_map(FacePose(blink=1.0))
    eye_centre = points[36:42].mean(axis=0)
    src = sampled_from(frame_map, eye_centre)
    assert src[1] < points[[37, 38], 1].min()  # sampled from above the upper lid
