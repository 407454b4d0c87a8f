"""Shared tiny Sonic checkpoint and prepared data for the sonic backend tests (CPU, random weights)."""

from __future__ import annotations

import pytest
from comfyui_sonic.nodes.engine.sonic import SonicLoadOptions, load_sonic_backend, write_random_checkpoint
from comfyui_sonic.nodes.engine.sonic.random_checkpoint import random_prepared_data
from comfyui_sonic.nodes.engine.types import SonicData

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
    return random_prepared_data(duration, size, seed)
