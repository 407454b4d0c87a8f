"""Paste-back: animated crops go back into the full original picture with a soft seam."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.paste import PasteBack, paste_back

from .lite.lite_clips import prepared, render


@pytest.fixture(scope="module")
def data():
    return prepared(0.4, resolution=256)


def test_frames_come_back_at_the_original_size_and_outside_the_crop_is_the_original(data):
    frames = render(data, seed=0)
    out = paste_back(frames, data)
    assert out.shape == (len(frames), *data.original.shape) and out.dtype == np.uint8
    x0, y0, x1, y1 = data.crop_box
    outside = np.ones(data.original.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[:, outside], np.broadcast_to(data.original[outside], out[:, outside].shape))


def test_the_seam_is_feathered_and_the_centre_is_the_frame(data):
    # Any backend's frames: here a flat grey chunk, so the blend is easy to read.
    grey = np.full((2, *data.image.shape), 128, np.uint8)
    out = paste_back(grey, data).astype(int)
    x0, y0, x1, y1 = data.crop_box
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    assert np.all(out[:, cy, cx] == 128)
    edges = [(cy, x0), (cy, x1 - 1), (y0, cx), (y1 - 1, cx)]
    h, w = data.original.shape[:2]
    for y, x in edges:
        on_border = x in (0, w - 1) or y in (0, h - 1)
        if not on_border:  # inside the picture the crop's edge is the original, fading to the frame
            assert np.abs(out[0, y, x] - data.original[y, x]).max() <= 12


def test_a_crop_on_the_picture_border_is_not_feathered_there(data):
    h, w = data.original.shape[:2]
    side = min(h, w) // 2
    at_corner = replace(data, crop_box=(0, 0, side, side))
    grey = np.full((1, *data.image.shape), 128, np.uint8)
    out = PasteBack(at_corner)(grey)
    assert np.all(out[0, 0, 0] == 128)  # the top-left corner is all frame
    assert np.abs(out[0, side - 1, side // 2].astype(int) - data.original[side - 1, side // 2]).max() <= 12
