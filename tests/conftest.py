"""Shared test set-up: the pack is importable as `comfyui_sonic` (as ComfyUI would load it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ensure_pack_importable() -> None:
    """Load the repo root as package `comfyui_sonic` when it is not pip-installed.

    This mirrors how ComfyUI imports a custom-node folder: a package from its
    __init__.py with the folder as its search location.
    """
    if importlib.util.find_spec("comfyui_sonic") is not None:
        return
    spec = importlib.util.spec_from_file_location(
        "comfyui_sonic", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_sonic"] = module
    spec.loader.exec_module(module)


_ensure_pack_importable()


def speech_like(seconds: float, sample_rate: int = 16000, seed: int = 0):
    """Voiced syllables (harmonics of ~120 Hz under a ~4 Hz envelope) with a pause in the middle.

    Stands in for speech in tests: it has an energy envelope that opens and
    closes like syllables, silence to close the mouth in, and a spectrum.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.7 * t), 0, None) ** 1.5
    envelope[(t > seconds * 0.45) & (t < seconds * 0.6)] = 0.0  # a pause
    signal = 0.25 * voiced * envelope + 0.002 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


@pytest.fixture
def face_image():
    """A real photographed face that ships with scikit-image (NASA, public domain)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture
def face_file(tmp_path, face_image):
    from PIL import Image

    path = tmp_path / "face.png"
    Image.fromarray(face_image).save(path)
    return path


@pytest.fixture
def speech_file(tmp_path):
    import soundfile

    path = tmp_path / "speech.wav"
    soundfile.write(path, speech_like(2.0, 22050), 22050)
    return path


@pytest.fixture
def espeak():
    """The espeak-ng backend; espeak-ng itself is installed by .ci/run (scripts/install_services.sh).

    A test that needs it fails in CI when it is missing and is skipped elsewhere, with the fix.
    """
    import shutil

    if shutil.which("espeak-ng") is None:
        from tests.services._common import unavailable

        unavailable("espeak-ng is not installed (Debian package espeak-ng)")
    from comfyui_sonic.nodes.engine.tts import EspeakBackend

    return EspeakBackend()
