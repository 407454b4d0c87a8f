"""LipSyncCorrect used the way a ComfyUI graph uses it: frames (or a core IMAGE) + AUDIO in,
fixed frames + AUDIO + offset out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.frames import FrameSource, array_source
from comfyui_sonic.nodes.frames_io import SONIC_FramesToImage
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


def uint8(frames: FrameSource) -> np.ndarray:
    return np.concatenate(list(frames.chunks()))


def test_every_input_has_a_tooltip_and_the_outputs_are_named():
    spec = LipSyncCorrect.INPUT_TYPES()
    inputs = {**spec["required"], **spec["optional"]}
    assert set(spec["optional"]) == {"frames", "images", "audio"}
    assert set(inputs) == {"frames", "images", "audio", "fps", "mode", "offset", "max_offset", "smoothing"}
    assert all("tooltip" in spec[1] for spec in inputs.values())
    assert LipSyncCorrect.RETURN_TYPES == ("SONIC_FRAMES", "AUDIO", "FLOAT")
    assert LipSyncCorrect.RETURN_NAMES == ("frames", "audio", "offset_seconds")
    assert inputs["max_offset"][1]["default"] == 0.3 and inputs["offset"][1]["max"] == 0.5


def test_auto_measures_a_late_video_fixes_it_and_shows_the_offset(clip):
    frames, audio = clip
    late = frames[np.clip(np.arange(len(frames)) - 2, 0, None)]  # 80 ms late
    out = LipSyncCorrect().correct(
        images=as_image(late), audio=audio, fps=FPS, mode="auto", max_offset=0.3, smoothing=0.0
    )
    fixed, audio_out, offset = out["result"]
    assert offset == pytest.approx(0.08, abs=1.0 / FPS)
    assert fixed.shape == (125, 256, 256, 3)
    assert audio_out is audio
    assert out["ui"]["text"][0].startswith("offset +") and "measured" in out["ui"]["text"][0]
    assert np.array_equal(uint8(fixed)[:-2], frames[:-2])
    images = SONIC_FramesToImage().convert(fixed)[0]  # for graphs that need a core IMAGE
    assert images.dtype == torch.float32 and images.shape == (125, 256, 256, 3)


def test_frames_bring_their_own_audio_and_rate(clip):
    frames, audio = clip
    sound = _engine_audio(audio)
    source = array_source(frames[np.clip(np.arange(len(frames)) - 2, 0, None)], FPS, sound)
    out = LipSyncCorrect().correct(frames=source, fps=30.0, mode="auto", max_offset=0.3)
    fixed, audio_out, offset = out["result"]
    assert offset == pytest.approx(0.08, abs=1.0 / FPS) and len(fixed) == 125
    assert (
        audio_out["sample_rate"] == 16000 and audio_out["waveform"].shape[-1] == audio["waveform"].shape[-1]
    )
    assert "fps 30 not applied: the frames are 25 fps" in out["ui"]["text"][0]


def test_lite_frames_with_their_own_audio_are_not_measured(clip):
    frames, audio = clip
    source = array_source(frames, FPS, _engine_audio(audio), in_sync=True, origin="lite")
    out = LipSyncCorrect().correct(frames=source, fps=FPS, mode="auto")
    fixed, _, offset = out["result"]
    assert offset == 0.0 and fixed is source
    assert (
        "assumed" in out["ui"]["text"][0]
        and "in sync with their audio by construction" in out["ui"]["text"][0]
    )
    other = {"waveform": torch.roll(audio["waveform"], 2 * 640, dims=-1), "sample_rate": 16000}
    measured = LipSyncCorrect().correct(frames=source, audio=other, fps=FPS, mode="auto")
    assert "measured" in measured["ui"]["text"][0]  # another soundtrack: its timing is measured


def test_frames_and_images_together_or_neither_are_refused(clip):
    frames, audio = clip
    source = array_source(frames[:10], FPS, _engine_audio(audio))
    with pytest.raises(SonicInputError, match="^images: both frames and images are connected"):
        LipSyncCorrect().correct(frames=source, images=as_image(frames[:10]), fps=FPS, mode="manual")
    with pytest.raises(SonicInputError, match="^frames: no frames connected"):
        LipSyncCorrect().correct(audio=audio, fps=FPS, mode="manual")


def _engine_audio(audio):
    from comfyui_sonic.nodes.engine.audio_input import audio_from_comfy

    return audio_from_comfy(audio, validate=False)


def test_manual_mode_applies_the_offset(clip):
    frames, audio = clip
    out = LipSyncCorrect().correct(images=as_image(frames), audio=audio, fps=FPS, mode="manual", offset=-0.2)
    fixed, _, offset = out["result"]
    assert offset == pytest.approx(-0.2) and "applied" in out["ui"]["text"][0]
    assert np.array_equal(uint8(fixed)[5:], frames[:-5])


def test_an_out_of_range_offset_is_refused_by_name(clip):
    frames, audio = clip
    with pytest.raises(SonicInputError, match="^offset: "):
        LipSyncCorrect().correct(images=as_image(frames[:4]), audio=audio, fps=FPS, mode="manual", offset=0.9)


def test_a_tiny_negative_offset_is_shown_as_plus_zero(clip):
    frames, audio = clip
    out = LipSyncCorrect().correct(
        images=as_image(frames[:10]), audio=audio, fps=FPS, mode="manual", offset=-0.0004
    )
    assert out["ui"]["text"][0].startswith("offset +0 ms applied")


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


def test_the_progress_bar_shows_before_the_face_model_loads(clip, comfy_bar, monkeypatch):
    import comfyui_sonic.nodes.engine.lipsync as engine

    frames, audio = clip
    real = engine.mouth_analyzer
    monkeypatch.setattr(engine, "mouth_analyzer", lambda: comfy_bar.append(("model",)) or real())
    LipSyncCorrect().correct(images=as_image(frames[:30]), audio=audio, fps=FPS, mode="auto")
    assert comfy_bar[0] == ("bar", 0, 30)
    assert comfy_bar[1] == ("model",)


def test_a_cancel_while_measuring_stops_the_node(clip, comfy_bar, monkeypatch):
    from comfyui_sonic.nodes import comfy_bridge

    class Interrupted(Exception):
        pass

    def interrupted():
        raise Interrupted

    monkeypatch.setattr(comfy_bridge, "throw_if_interrupted", interrupted)
    frames, audio = clip
    with pytest.raises(Interrupted):
        LipSyncCorrect().correct(images=as_image(frames), audio=audio, fps=FPS, mode="auto")
