"""End to end: the sonic backend turns prepared data into exactly the frames the node promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicOutOfMemoryError
from comfyui_sonic.nodes.engine.progress import NullProgress
from comfyui_sonic.nodes.engine.sonic import SonicLoadOptions, load_sonic_backend
from comfyui_sonic.nodes.engine.types import GenerationParams

SIZE = 64


def run(backend, data, **params) -> np.ndarray:
    params.setdefault("inference_steps", 2)
    chunks = list(backend.generate(data, GenerationParams(**params), NullProgress()))
    if data.frame_count(params.get("fps", 25.0)) > 16:
        assert len(chunks) > 1  # streamed, never the whole clip at once
    for chunk in chunks:
        assert chunk.dtype == np.uint8 and chunk.ndim == 4 and chunk.shape[1:] == (SIZE, SIZE, 3)
    return np.concatenate(chunks)


@pytest.mark.parametrize("fps", [25.0, 30.0, 12.5])
def test_frame_count_and_size_match_the_promise(tiny_backend, fps, make_data):
    data = make_data(duration=1.3)
    frames = run(tiny_backend, data, fps=fps)
    assert frames.shape == (data.frame_count(fps), SIZE, SIZE, 3)


def test_with_rife_interpolation(tiny_checkpoint, make_data):
    backend = load_sonic_backend(
        SonicLoadOptions(
            model_dir=tiny_checkpoint["model_dir"],
            svd=tiny_checkpoint["svd"],
            dtype="fp32",
            device="cpu",
            enable_rife=True,
        )  # config "auto": recognised as tiny from unet.pth
    )
    assert backend.rife_active and backend.output_fps_source() == 25.0
    data = make_data(duration=0.9)
    frames = run(backend, data, fps=25.0)
    assert frames.shape == (data.frame_count(25.0), SIZE, SIZE, 3)


def test_shorter_than_one_generated_frame_still_gives_frames(tiny_backend, make_data):
    data = make_data(duration=0.05)
    assert run(tiny_backend, data).shape[0] == data.frame_count(25.0)


def test_same_seed_same_frames_and_seed_zero_is_a_seed(tiny_backend, make_data):
    data = make_data(duration=0.8)
    a = run(tiny_backend, data, seed=0)
    b = run(tiny_backend, data, seed=0)
    c = run(tiny_backend, data, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class RecordingProgress(NullProgress):
    def __init__(self) -> None:
        super().__init__()
        self.updates: list[int] = []

    def update(self, n: int = 1) -> None:
        super().update(n)
        self.updates.append(n)


def test_progress_counts_every_window_of_every_step_then_every_frame(tiny_backend, make_data):
    progress = RecordingProgress()
    data = make_data(2.0)  # 25 generated frames: 4 windows of 8 per step in the tiny config
    params = GenerationParams(inference_steps=3)
    list(tiny_backend.generate(data, params, progress))
    frames = data.frame_count(params.fps)
    assert progress.updates[:12] == [1] * 12  # 3 steps x 4 windows, one UNet call each
    assert sum(progress.updates[12:]) == frames  # then the decoded frames, chunk by chunk
    assert progress.done == 3 * 4 + frames == tiny_backend.progress_total(data, params)


class Cancelled(Exception):
    pass


class CancelAfter:
    """A progress whose user presses cancel after `k` units of work (UNet calls)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.total = 0
        self.done = 0

    def update(self, n: int = 1) -> None:
        self.done += n

    def check_cancel(self) -> None:
        if self.done >= self.k:
            raise Cancelled


def test_cancel_stops_within_a_step_at_the_next_window(tiny_backend, make_data):
    # A step runs the UNet once per window of the clip: a minute of speech is 30 windows of
    # the full model, minutes of GPU time. ComfyUI's cancel must not wait for the whole step.
    calls = []
    hook = tiny_backend.models.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        data = make_data(duration=2.0)  # 25 generated frames: 4 windows per step
        with pytest.raises(Cancelled):
            list(tiny_backend.generate(data, GenerationParams(inference_steps=5), CancelAfter(2)))
    finally:
        hook.remove()
    assert len(calls) == 2


def test_cancel_stops_between_steps(tiny_backend, make_data):
    calls = []
    hook = tiny_backend.models.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        data = make_data(duration=0.5)  # 6 generated frames: one window per step
        with pytest.raises(Cancelled):
            list(tiny_backend.generate(data, GenerationParams(inference_steps=5), CancelAfter(2)))
    finally:
        hook.remove()
    assert len(calls) == 2


def test_out_of_memory_names_resolution_and_next_tier_and_next_call_works(
    tiny_backend, monkeypatch, make_data
):
    unet = tiny_backend.models.unet

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(unet, "forward", exhausted)
    data = make_data(duration=0.5)
    with pytest.raises(SonicOutOfMemoryError) as info:
        list(tiny_backend.generate(data, GenerationParams(inference_steps=2), NullProgress()))
    assert info.value.resolution == 512 and info.value.next_tier == 384
    assert "min_resolution=512" in str(info.value) and "384" in str(info.value)
    monkeypatch.undo()
    assert run(tiny_backend, data).shape[0] == data.frame_count(25.0)


def test_bad_image_size_is_an_input_error(tiny_backend, make_data):
    from comfyui_sonic.nodes.engine.errors import SonicInputError

    data = make_data(size=64)
    data.image = data.image[:60]
    with pytest.raises(SonicInputError, match="multiples of 64"):
        list(tiny_backend.generate(data, GenerationParams(), NullProgress()))
