"""SONIC_Inference with a backend whose frames are stored (sonic, tiny random weights on the CPU).

Its frames go to a uint8 frame store in the temp folder while they are made; the store lives as
long as something (ComfyUI's cache, the next node) holds the frames, and a cancel mid-stream
leaves no files.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes import comfy_bridge
from comfyui_sonic.nodes.engine.backend import SonicModel
from comfyui_sonic.nodes.engine.frames import FrameStore, live_stores
from comfyui_sonic.nodes.engine.sonic import SonicLoadOptions, load_sonic_backend, write_random_checkpoint
from comfyui_sonic.nodes.engine.sonic.random_checkpoint import random_prepared_data
from comfyui_sonic.nodes.frames_io import SONIC_FramesToImage
from comfyui_sonic.nodes.inference import SONIC_Inference
from comfyui_sonic.nodes.video_encode import VideoEncode


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    files = write_random_checkpoint(tmp_path_factory.mktemp("sonic_tiny"), "tiny", seed=0)
    options = SonicLoadOptions(
        model_dir=files["model_dir"],
        svd=files["svd"],
        dtype="fp32",
        device="cpu",
        enable_rife=False,
        config="tiny",
    )
    return SonicModel(backend=load_sonic_backend(options))


@pytest.fixture
def frames_dir(tmp_path, monkeypatch):
    folder = tmp_path / "frames"
    monkeypatch.setenv("SONIC_FRAMES_DIR", str(folder))
    return folder


def animate(model, seconds: float = 1.0, seed: int = 0):
    data = random_prepared_data(seconds, 64, seed=0)
    return SONIC_Inference().generate(
        model=model, data=data, seed=seed, inference_steps=2, dynamic_scale=1.0, motion_scale=1.0, fps=25.0
    )


def test_sonic_frames_are_stored_as_uint8_and_removed_when_dropped(model, frames_dir):
    frames, audio, fps = animate(model)
    assert isinstance(frames, FrameStore) and len(frames) == 25 and fps == 25.0
    assert frames.path.stat().st_size == 25 * 64 * 64 * 3
    assert not frames.info.in_sync  # a diffusion model's timing is measured, not assumed
    images = SONIC_FramesToImage().convert(frames)[0]
    assert images.shape == (25, 64, 64, 3) and images.dtype == torch.float32
    folder = frames.folder
    del frames
    gc.collect()
    assert not folder.exists() and live_stores(frames_dir) == []


def test_two_prompts_back_to_back_leave_one_store_while_cached_and_none_after(model, frames_dir, tmp_path):
    comfy_bridge.set_output_dir(tmp_path / "out")
    try:
        cache = {}
        for seed in (1, 2):  # a re-run with one changed widget: the cache's output is replaced
            cache["Animate"] = animate(model, seed=seed)
            VideoEncode().encode(frames=cache["Animate"][0], fps=25.0, preset="ultrafast")
            gc.collect()
            assert len(live_stores(frames_dir)) == 1
        cache.clear()
        gc.collect()
        assert live_stores(frames_dir) == []
    finally:
        comfy_bridge.set_output_dir(None)


def test_a_cancel_while_frames_stream_into_the_store_removes_them(model, frames_dir, monkeypatch):
    class Interrupted(Exception):
        pass

    def store_has_frames() -> bool:
        return any(p.stat().st_size > 0 for p in frames_dir.glob("sonic-frames-*/frames.rgb"))

    def cancel_once_frames_are_stored():
        if store_has_frames():
            raise Interrupted

    import sys
    import types

    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = lambda total: types.SimpleNamespace(update=lambda n: None)
    package = types.ModuleType("comfy")
    package.utils = utils
    monkeypatch.setitem(sys.modules, "comfy", package)
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    monkeypatch.setattr(comfy_bridge, "throw_if_interrupted", cancel_once_frames_are_stored)
    with pytest.raises(Interrupted):
        animate(model, seconds=3.0)
    assert live_stores(frames_dir) == []


def test_stored_frames_are_the_backends_frames(model, frames_dir):
    frames = animate(model, seed=3)[0]
    again = animate(model, seed=3)[0]
    a, b = np.concatenate(list(frames.chunks())), np.concatenate(list(again.chunks()))
    assert a.dtype == np.uint8 and np.array_equal(a, b)
