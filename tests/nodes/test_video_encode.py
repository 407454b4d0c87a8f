"""VideoEncode used the way a ComfyUI graph uses it: IMAGE frames + AUDIO -> an MP4 in the output folder."""

from __future__ import annotations

import av
import pytest
import torch
from comfyui_sonic.nodes import comfy_bridge
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.video_encode import EncodedVideo, VideoEncode


@pytest.fixture
def output_dir(tmp_path):
    comfy_bridge.set_output_dir(tmp_path)
    yield tmp_path
    comfy_bridge.set_output_dir(None)


def frames(n: int, height: int, width: int) -> torch.Tensor:
    return torch.linspace(0, 1, n).view(n, 1, 1, 1).expand(n, height, width, 3).contiguous()


def speech(seconds: float, rate: int = 16000) -> dict:
    t = torch.arange(round(seconds * rate)) / rate
    return {"waveform": (0.3 * torch.sin(2 * torch.pi * 220 * t)).view(1, 1, -1), "sample_rate": rate}


def test_every_input_has_a_tooltip():
    spec = VideoEncode.INPUT_TYPES()
    inputs = {**spec["required"], **spec["optional"]}
    assert set(inputs) == {"images", "fps", "codec", "crf", "preset", "filename_prefix", "audio"}
    assert all(options.get("tooltip") for _, options in inputs.values())
    assert "h264" in inputs["codec"][0] and inputs["filename_prefix"][1]["default"] == "sonic/sonic"
    assert VideoEncode.OUTPUT_NODE is True and VideoEncode.RETURN_TYPES == ("VIDEO", "STRING")


def test_frames_and_audio_become_an_mp4_reported_like_core_save_video(output_dir):
    out = VideoEncode().encode(
        images=frames(37, 64, 96),
        fps=25.0,
        codec="h264",
        crf=19,
        preset="veryfast",
        filename_prefix="sonic/test",
        audio=speech(1.0),
    )
    video, path = out["result"]
    entry = out["ui"]["images"][0]
    assert out["ui"]["animated"] == (True,) and "37 frames" in out["ui"]["text"][0]
    assert entry["type"] == "output" and entry["subfolder"] == "sonic" and entry["filename"].endswith(".mp4")
    assert path == str(output_dir / "sonic" / entry["filename"])
    assert isinstance(video, EncodedVideo) and video.get_stream_source() == path  # no comfy_api here
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 25 and stream.codec_context.pix_fmt == "yuv420p"
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(37 / 25, abs=1024 / 16000)
        assert sum(1 for _ in container.decode(video=0)) == 37


def test_each_run_gets_a_new_file(output_dir):
    first = VideoEncode().encode(images=frames(3, 64, 64), fps=25.0, filename_prefix="clip")["result"][1]
    second = VideoEncode().encode(images=frames(3, 64, 64), fps=25.0, filename_prefix="clip")["result"][1]
    assert first != second and first.endswith("clip_00001_.mp4") and second.endswith("clip_00002_.mp4")


def test_odd_sized_frames_are_encoded(output_dir):
    path = VideoEncode().encode(images=frames(4, 65, 99), fps=10.0)["result"][1]
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (100, 66)
        assert sum(1 for _ in container.decode(video=0)) == 4


def test_an_empty_batch_is_an_input_error(output_dir):
    with pytest.raises(SonicInputError, match="^images: "):
        VideoEncode().encode(images=torch.zeros(0, 64, 64, 3), fps=25.0)
    assert not any(output_dir.rglob("*.mp4"))


def test_a_prefix_that_leaves_the_output_folder_is_refused(output_dir):
    with pytest.raises(SonicInputError, match="^filename_prefix: .* leaves the output folder"):
        VideoEncode().encode(images=frames(2, 64, 64), fps=25.0, filename_prefix="../../escape/clip")
    assert not (output_dir.parent.parent / "escape").exists()


def test_frames_in_0_to_255_are_refused_before_a_white_clip_is_written(output_dir):
    with pytest.raises(SonicInputError, match=r"^images: .*must be floats in 0\.\.1"):
        VideoEncode().encode(images=frames(3, 64, 64) * 255.0, fps=25.0, filename_prefix="white")


def test_a_nan_fps_is_refused_by_name(output_dir):
    with pytest.raises(SonicInputError, match="^fps: nan is not a finite number"):
        VideoEncode().encode(images=frames(3, 64, 64), fps=float("nan"))


def test_the_progress_bar_shows_at_zero_before_encoding_starts(monkeypatch, tmp_path):
    import sys
    import types

    events = []

    class Bar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None):
            events.append((value, total))

        def update(self, n):
            events.append(("+", n))

    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = Bar
    package = types.ModuleType("comfy")
    package.utils = utils
    monkeypatch.setitem(sys.modules, "comfy", package)
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    VideoEncode().encode(images=frames(3, 64, 64), fps=25.0, filename_prefix="bar")
    assert events[0] == (0, 3) and events[-1][0] == "+"
