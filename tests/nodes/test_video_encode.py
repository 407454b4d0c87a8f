"""VideoEncode used the way a ComfyUI graph uses it: frames (or a core IMAGE) + AUDIO -> an MP4 in the output folder."""

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
    assert set(inputs) == {"frames", "images", "fps", "codec", "crf", "preset", "filename_prefix", "audio"}
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


def test_streamed_frames_carry_their_rate_and_soundtrack(output_dir):
    import numpy as np
    from comfyui_sonic.nodes.engine.frames import array_source
    from comfyui_sonic.nodes.engine.types import Audio

    pixels = (frames(30, 64, 64).numpy() * 255).astype(np.uint8)
    t = np.arange(16000, dtype=np.float32) / 16000
    sound = Audio((0.3 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), 16000)
    out = VideoEncode().encode(frames=array_source(pixels, 30.0, sound), fps=25.0, preset="ultrafast")
    path = out["result"][1]
    assert "fps 25 not applied: the frames are 30 fps" in out["ui"]["text"][0]
    with av.open(path) as container:
        assert container.streams.video[0].average_rate == 30 and container.streams.audio
        assert sum(1 for _ in container.decode(video=0)) == 30


def test_no_frames_connected_names_the_input(output_dir):
    with pytest.raises(SonicInputError, match="^frames: no frames connected"):
        VideoEncode().encode(fps=25.0)


def test_a_full_output_disk_is_one_error_and_leaves_no_mp4(tmp_path):
    # The kernel refuses the write (a file-size limit in a child process: EFBIG, as a full disk or
    # quota would): one line naming the output folder, and no file that looks like a finished MP4.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import resource, signal
        import numpy as np, torch
        from comfyui_sonic.nodes import comfy_bridge
        from comfyui_sonic.nodes.video_encode import VideoEncode
        comfy_bridge.set_output_dir({str(tmp_path)!r})
        noise = torch.from_numpy(np.random.default_rng(0).random((60, 256, 256, 3), dtype=np.float32))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        VideoEncode().encode(images=noise, fps=25.0, crf=0, preset="ultrafast", filename_prefix="sonic/full")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "SonicStorageError" in last and str(tmp_path / "sonic") in last and "nothing was saved" in last
    assert [p.name for p in (tmp_path / "sonic").iterdir()] == []
