"""LipSyncCorrect used the way a ComfyUI graph uses it: IMAGE + AUDIO in, fixed IMAGE + AUDIO + offset out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.lipsync_correct import LipSyncCorrect

from ..engine.lite.lite_clips import prepared, render

FPS = 25.0


@pytest.fixture(scope="module")
def clip():
    data = prepared(5.0, seed=4, resolution=256)
    frames = render(data, seed=0)
    audio = {"waveform": torch.from_numpy(data.audio_16k).reshape(1, 1, -1), "sample_rate": 16000}
    return frames, audio


def as_image(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float().div(255.0)


def test_every_input_has_a_tooltip_and_the_outputs_are_named():
    inputs = LipSyncCorrect.INPUT_TYPES()["required"]
    assert set(inputs) == {"images", "audio", "fps", "mode", "offset", "max_offset", "smoothing"}
    assert all("tooltip" in spec[1] for spec in inputs.values())
    assert LipSyncCorrect.RETURN_TYPES == ("IMAGE", "AUDIO", "FLOAT")
    assert LipSyncCorrect.RETURN_NAMES == ("images", "audio", "offset_seconds")
    assert inputs["max_offset"][1]["default"] == 0.3 and inputs["offset"][1]["max"] == 0.5


def test_auto_measures_a_late_video_fixes_it_and_shows_the_offset(clip):
    frames, audio = clip
    late = frames[np.clip(np.arange(len(frames)) - 2, 0, None)]  # 80 ms late
    out = LipSyncCorrect().correct(as_image(late), audio, FPS, mode="auto", max_offset=0.3, smoothing=0.0)
    images, audio_out, offset = out["result"]
    assert offset == pytest.approx(0.08, abs=1.0 / FPS)
    assert images.dtype == torch.float32 and images.shape == (125, 256, 256, 3)
    assert audio_out is audio
    assert out["ui"]["text"][0].startswith("offset +") and "measured" in out["ui"]["text"][0]
    fixed = (images.numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(fixed[:-2], frames[:-2])


def test_manual_mode_applies_the_offset(clip):
    frames, audio = clip
    out = LipSyncCorrect().correct(as_image(frames), audio, FPS, mode="manual", offset=-0.2)
    images, _, offset = out["result"]
    assert offset == pytest.approx(-0.2) and "applied" in out["ui"]["text"][0]
    assert torch.equal(images[5:], as_image(frames)[:-5])


def test_an_out_of_range_offset_is_refused_by_name(clip):
    frames, audio = clip
    with pytest.raises(SonicInputError, match="^offset: "):
        LipSyncCorrect().correct(as_image(frames[:4]), audio, FPS, mode="manual", offset=0.9)


def test_a_tiny_negative_offset_is_shown_as_plus_zero(clip):
    frames, audio = clip
    out = LipSyncCorrect().correct(as_image(frames[:10]), audio, FPS, mode="manual", offset=-0.0004)
    assert out["ui"]["text"][0].startswith("offset +0 ms applied")


def test_a_cancel_during_conversion_stops_the_node(clip, monkeypatch):
    from comfyui_sonic.nodes import comfy_bridge

    class Interrupted(Exception):
        pass

    def interrupted():
        raise Interrupted

    monkeypatch.setattr(comfy_bridge, "throw_if_interrupted", interrupted)
    frames, audio = clip
    with pytest.raises(Interrupted):
        LipSyncCorrect().correct(as_image(frames), audio, FPS, mode="manual", offset=0.0)


class RecordingBar:
    """ComfyUI's comfy.utils.ProgressBar as the nodes see it, recording what the UI would be sent."""

    events: list = []

    def __init__(self, total: int) -> None:
        self.total = total

    def update_absolute(self, value: int, total: int | None = None) -> None:
        RecordingBar.events.append(("bar", value, total))

    def update(self, n: int) -> None:
        RecordingBar.events.append(("bar+", n, self.total))


@pytest.fixture
def comfy_bar(monkeypatch):
    import sys
    import types

    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = RecordingBar
    package = types.ModuleType("comfy")
    package.utils = utils
    monkeypatch.setitem(sys.modules, "comfy", package)
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    RecordingBar.events = []
    return RecordingBar.events


def test_the_progress_bar_shows_before_any_frame_is_converted(clip, comfy_bar, monkeypatch):
    import comfyui_sonic.nodes.lipsync_correct as node

    frames, audio = clip
    real = node._to_uint8
    monkeypatch.setattr(node, "_to_uint8", lambda images: comfy_bar.append(("convert",)) or real(images))
    LipSyncCorrect().correct(as_image(frames[:10]), audio, FPS, mode="manual", offset=0.0)
    assert comfy_bar[0] == ("bar", 0, 10)
    assert comfy_bar[1] == ("convert",)


def test_with_smoothing_the_bar_counts_the_smoothing_too_and_ends_full(clip, comfy_bar):
    frames, audio = clip
    LipSyncCorrect().correct(as_image(frames[:40]), audio, FPS, mode="auto", smoothing=0.3)
    total = 40 + 125  # 40 frames tracked, then 5 s of audio at 25 fps smoothed
    assert comfy_bar[0] == ("bar", 0, total)
    steps = sum(event[1] for event in comfy_bar if event[0] == "bar+")
    assert steps == total, "the bar ends full: no stretch of work without progress at its end"
