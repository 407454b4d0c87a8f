"""IMAGE tensors <-> uint8 frames, as the nodes hand frames to and from the engine."""

from __future__ import annotations

import numpy as np
import torch
from comfyui_sonic.nodes.image_tensor import ROWS, to_image, to_uint8, uint8_chunk


def test_round_trip_is_exact_for_uint8_frames():
    frames = np.random.default_rng(0).integers(0, 256, (ROWS + 3, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(to_image(frames)), frames)


def test_nan_is_black_and_values_are_clamped():
    images = torch.tensor([[[[float("nan"), 2.0, -1.0]]]])
    assert uint8_chunk(images).tolist() == [[[[0, 255, 0]]]]


def test_grey_and_rgba_batches_become_rgb():
    grey = torch.full((1, 2, 2, 1), 0.5)
    rgba = torch.ones((1, 2, 2, 4))
    assert uint8_chunk(grey).shape == (1, 2, 2, 3) and int(uint8_chunk(grey)[0, 0, 0, 1]) == 128
    assert uint8_chunk(rgba).shape == (1, 2, 2, 3)


def test_an_image_scaled_0_to_255_is_refused_with_one_line():
    # A custom node that forgot to divide by 255: clamped, every frame would be white.
    import pytest
    from comfyui_sonic.nodes.engine.errors import SonicInputError

    for images in (torch.rand(2, 4, 4, 3) * 255.0, np.random.default_rng(0).random((2, 4, 4, 3)) * 255.0):
        with pytest.raises(SonicInputError) as excinfo:
            to_uint8(images, "images")
        message = str(excinfo.value)
        assert message.startswith("images: ") and "must be floats in 0..1" in message and "\n" not in message
    assert uint8_chunk(torch.full((1, 2, 2, 3), float("inf"))).max() == 255  # inf is clamped, not refused
    assert to_uint8(torch.full((1, 2, 2, 3), 200, dtype=torch.uint8)).max() == 200  # uint8 is already 0..255
