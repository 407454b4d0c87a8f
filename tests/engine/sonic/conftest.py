"""Shared tiny Sonic checkpoint and prepared data for the sonic backend tests (CPU, random weights)."""

from __future__ import annotations

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.sonic import SonicLoadOptions, load_sonic_backend, write_random_checkpoint
from comfyui_sonic.nodes.engine.types import Audio, SonicData

SIZE = 64


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A complete tiny model folder with the official file and key names (+ a diffusers SVD folder)."""
    return write_random_checkpoint(tmp_path_factory.mktemp("sonic_tiny"), "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_backend(tiny_checkpoint):
    """A backend without RIFE (frames are retimed by repetition): the fast path most tests use."""
    options = SonicLoadOptions(
        model_dir=tiny_checkpoint["model_dir"],
        svd=tiny_checkpoint["svd"],
        dtype="fp32",
        device="cpu",
        enable_rife=False,
        config="tiny",
    )
    return load_sonic_backend(options)


@pytest.fixture
def make_data():
    """Factory of prepared data: make_data(duration, size, seed)."""
    return build_data


def build_data(duration: float = 1.0, size: int = SIZE, seed: int = 0) -> SonicData:
    """A prepared portrait (random pixels, centred face mask) and a speech-like noise clip."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.float32)
    q = size // 4
    mask[q : size - q, q : size - q] = 1.0
    audio = (rng.standard_normal(int(16000 * duration)) * 0.1).astype(np.float32)
    return SonicData(
        image=image,
        face_box=(q, q, size - q, size - q),
        face_mask=mask,
        crop_box=(0, 0, size, size),
        original=image,
        audio_16k=audio,
        audio=Audio(audio[None], 16000),
        duration=duration,
        min_resolution=512,
        expand_ratio=0.5,
    )
