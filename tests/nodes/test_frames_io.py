"""Core IMAGE / AUDIO values our nodes make: torch inside ComfyUI, numpy in the embedded executor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes import comfy_bridge
from comfyui_sonic.nodes.engine.frames import ClipInfo, ReplaySource
from comfyui_sonic.nodes.engine.types import Audio
from comfyui_sonic.nodes.frames_io import audio_to_comfy, image_to_comfy, to_image


@pytest.fixture
def arrays():
    comfy_bridge.set_array_values(True)
    yield
    comfy_bridge.set_array_values(False)


def clip(count: int = 40) -> tuple[ReplaySource, np.ndarray]:
    frames = np.random.default_rng(0).integers(0, 256, (count, 8, 6, 3), dtype=np.uint8)

    def start():
        for i in range(0, count, 16):
            yield frames[i : i + 16]

    return ReplaySource(ClipInfo(6, 8, count, 25.0), start), frames


def test_torch_by_default_numpy_with_arrays_and_the_same_numbers(arrays):
    source, frames = clip()
    array = to_image(source)
    comfy_bridge.set_array_values(False)
    tensor = to_image(source)
    assert type(array) is np.ndarray and isinstance(tensor, torch.Tensor)
    assert array.dtype == np.float32 and array.shape == (40, 8, 6, 3)
    expected = torch.from_numpy(frames).float().div_(255.0)  # what the node made before
    assert torch.equal(tensor, expected) and np.array_equal(array, expected.numpy())


def test_audio_and_a_picture_in_either_form(arrays):
    audio = Audio(np.linspace(-1, 1, 320, dtype=np.float32)[None], 16000)
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    wave, (image, mask) = audio_to_comfy(audio)["waveform"], image_to_comfy(rgb)
    comfy_bridge.set_array_values(False)
    t_wave, (t_image, t_mask) = audio_to_comfy(audio)["waveform"], image_to_comfy(rgb)
    assert type(wave) is np.ndarray and isinstance(t_wave, torch.Tensor) and wave.shape == (1, 1, 320)
    assert np.array_equal(wave, t_wave.numpy())
    assert type(image) is np.ndarray and isinstance(t_image, torch.Tensor) and image.shape == (1, 4, 5, 3)
    assert np.array_equal(image, t_image.numpy()) and np.array_equal(image[0], rgb / np.float32(255))
    assert mask.shape == (1, 4, 5) and not mask.any() and np.array_equal(mask, t_mask.numpy())
