"""VideoWriter: the MP4 decodes with exactly the frames, rate, format and audio length that were asked for."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from comfyui_sonic.nodes.engine.encode import VideoWriter, available_codecs, encode_video
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.types import Audio

AAC_FRAME = 1024  # samples per AAC frame: the granularity of the audio track's length


def gradient_frames(n: int, height: int, width: int, start: int = 0) -> np.ndarray:
    """Frames whose brightness steps with the frame number (so order and count are visible)."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i] = (start + i) * 5 % 256
    return frames


def stereo(seconds: float, rate: int = 44100) -> Audio:
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return Audio(samples=np.stack([wave, wave]), sample_rate=rate)


def probe(path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "rate": video.average_rate,
            "size": (video.width, video.height),
            "frames": [f.to_ndarray(format="rgb24") for f in container.decode(video=0)],
        }
    with av.open(str(path)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            info["audio_codec"] = stream.codec_context.name
            info["audio_rate"] = stream.rate
            info["audio_seconds"] = float(stream.duration * stream.time_base)
            info["audio_decoded"] = sum(f.samples for f in container.decode(audio=0))
    return info


def moov_before_mdat(path) -> bool:
    data = path.read_bytes()
    return 0 <= data.find(b"moov") < data.find(b"mdat")


def test_streamed_chunks_give_exact_frames_fps_and_format(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 64, 48, 25.0) as writer:
        for start in range(0, 40, 16):
            writer.write(gradient_frames(min(16, 40 - start), 48, 64, start))
    assert writer.close() == path and path.is_file()
    info = probe(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["rate"] == 25 and info["size"] == (64, 48)
    assert len(info["frames"]) == 40
    means = [f.mean() for f in info["frames"]]
    assert means == pytest.approx([i * 5 % 256 for i in range(40)], abs=3)
    assert moov_before_mdat(path)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("audio_seconds", "frames"), [(2.0, 50), (1.3, 50), (3.0, 50)], ids=["equal", "short", "long"]
)
def test_audio_is_trimmed_or_padded_to_the_video_length(tmp_path, audio_seconds, frames):
    path = encode_video(
        gradient_frames(frames, 48, 64), 25.0, tmp_path / "a.mp4", audio=stereo(audio_seconds)
    )
    info = probe(path)
    video_seconds = frames / 25.0
    assert len(info["frames"]) == frames
    assert info["audio_codec"] == "aac" and info["audio_rate"] == 44100
    assert info["audio_seconds"] == pytest.approx(video_seconds, abs=AAC_FRAME / 44100)
    assert abs(info["audio_decoded"] - video_seconds * 44100) <= AAC_FRAME
    assert moov_before_mdat(path)


def test_ntsc_rates_are_kept_exact(tmp_path):
    path = encode_video(
        gradient_frames(30, 48, 64), 30000 / 1001, tmp_path / "ntsc.mp4", audio=stereo(1.0, 48000)
    )
    info = probe(path)
    assert info["rate"] == Fraction(30000, 1001) and len(info["frames"]) == 30
    assert abs(info["audio_decoded"] - 30 * 1001 / 30000 * 48000) <= AAC_FRAME


def test_odd_sizes_are_padded_by_one_replicated_pixel(tmp_path):
    frames = np.zeros((5, 33, 47, 3), np.uint8)
    frames[:, :, -1] = 255  # a white last column: the padding column repeats it
    frames[:, -1, :] = 255
    info = probe(encode_video(frames, 12.5, tmp_path / "odd.mp4", crf=0, preset="ultrafast"))
    assert info["size"] == (48, 34) and len(info["frames"]) == 5
    assert info["frames"][0][5, 47].min() > 200 and info["frames"][0][33, 5].min() > 200


def test_colours_survive_and_the_stream_says_bt709(tmp_path):
    skin = np.empty((4, 64, 64, 3), np.uint8)
    skin[:] = (224, 172, 140)
    path = encode_video(skin, 25.0, tmp_path / "skin.mp4", crf=0, preset="ultrafast")
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_primaries, context.color_trc) == (1, 1, 1)
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(decoded[32, 32].astype(int) - (224, 172, 140)).max() <= 3


def test_mono_audio_at_an_unusual_rate_is_encoded(tmp_path):
    rate = 22000  # not an AAC rate: resampled
    audio = Audio(samples=np.zeros((1, rate), np.float32), sample_rate=rate)
    info = probe(encode_video(gradient_frames(25, 48, 64), 25.0, tmp_path / "m.mp4", audio=audio))
    assert info["audio_rate"] in (22050, 24000) and info["audio_seconds"] == pytest.approx(1.0, abs=0.03)


@pytest.mark.skipif("h265" not in available_codecs(), reason="this PyAV build has no libx265")
def test_h265_when_the_build_has_it(tmp_path):
    info = probe(encode_video(gradient_frames(10, 64, 64), 25.0, tmp_path / "hevc.mp4", codec="h265"))
    assert info["codec"] == "hevc" and len(info["frames"]) == 10


def test_a_failed_encode_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 64, 48, 25.0) as writer:
            writer.write(gradient_frames(3, 48, 64))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_no_frames_is_an_input_error(tmp_path):
    with pytest.raises(SonicInputError, match="^images: no frames"):
        with VideoWriter(tmp_path / "empty.mp4", 64, 48, 25.0):
            pass
    assert list(tmp_path.iterdir()) == []


def test_frames_of_the_wrong_size_are_refused(tmp_path):
    with pytest.raises(SonicInputError, match="^images: .*64x48"):
        with VideoWriter(tmp_path / "x.mp4", 64, 48, 25.0) as writer:
            writer.write(np.zeros((2, 50, 64, 3), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"crf": 60}, "crf"),
        ({"preset": "warp"}, "preset"),
        ({"codec": "vp9"}, "codec"),
    ],
)
def test_bad_settings_are_refused_before_a_file_is_opened(tmp_path, kwargs, name):
    settings = {"fps": 25.0, **kwargs}
    fps = settings.pop("fps")
    with pytest.raises(SonicInputError, match=f"^{name}: "):
        VideoWriter(tmp_path / "x.mp4", 64, 48, fps, **settings)
    assert list(tmp_path.iterdir()) == []
