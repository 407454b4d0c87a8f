"""Speech input: any file FFmpeg reads decodes; empty, corrupt, too short or too long fails clearly."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from comfyui_sonic.nodes.engine.audio_input import (
    MIN_DURATION,
    audio_from_comfy,
    fit_length,
    load_audio,
    to_16k_mono,
)
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.types import Audio


def assert_one_line_error(excinfo, input_name: str, *words: str) -> None:
    message = str(excinfo.value)
    assert message.startswith(f"{input_name}: ") and "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_files_decode_to_float_channels_at_their_own_rate(tmp_path, make_tone, suffix):
    clip = make_tone(1.5, rate=22050, channels=2)
    path = tmp_path / f"speech{suffix}"
    soundfile.write(path, clip.samples.T, 22050)
    audio = load_audio(path)
    assert audio.sample_rate == 22050 and audio.samples.shape[0] == 2
    assert audio.samples.dtype == np.float32
    assert audio.duration == pytest.approx(1.5, abs=0.03)
    assert np.abs(audio.samples).max() == pytest.approx(0.3, abs=0.02)


def test_audio_in_a_video_container_decodes(tmp_path, make_tone):
    import av

    path = tmp_path / "clip.m4a"
    clip = make_tone(1.0, rate=48000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(clip.samples, format="fltp", layout="mono")
        frame.sample_rate = 48000
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    audio = load_audio(path)
    assert audio.sample_rate == 48000 and audio.duration == pytest.approx(1.0, abs=0.05)


def test_an_empty_file_is_refused_by_name(tmp_path):
    path = tmp_path / "silence.wav"
    path.write_bytes(b"")
    with pytest.raises(SonicInputError) as excinfo:
        load_audio(path)
    assert_one_line_error(excinfo, "audio", "silence.wav", "empty")


def test_a_wav_with_no_samples_is_refused(tmp_path):
    path = tmp_path / "nothing.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(SonicInputError) as excinfo:
        load_audio(path)
    assert_one_line_error(excinfo, "audio", "nothing.wav")


def test_a_corrupt_file_is_refused_by_name(tmp_path):
    path = tmp_path / "garbage.mp3"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(SonicInputError) as excinfo:
        load_audio(path)
    assert_one_line_error(excinfo, "audio", "garbage.mp3")


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(SonicInputError) as excinfo:
        load_audio(tmp_path / "nope.wav")
    assert_one_line_error(excinfo, "audio", "not found")


def test_audio_shorter_than_the_minimum_is_refused(tmp_path, make_tone):
    path = tmp_path / "blip.wav"
    soundfile.write(path, make_tone(0.05).samples[0], 16000)
    with pytest.raises(SonicInputError) as excinfo:
        load_audio(path)
    assert_one_line_error(excinfo, "audio", "too short", str(MIN_DURATION))


def test_audio_over_the_maximum_is_refused(tmp_path, make_tone, monkeypatch):
    monkeypatch.setenv("SONIC_MAX_AUDIO_SECONDS", "1.0")
    path = tmp_path / "long.wav"
    soundfile.write(path, make_tone(3.0).samples[0], 16000)
    with pytest.raises(SonicInputError) as excinfo:
        load_audio(path)
    assert_one_line_error(excinfo, "audio", "too long", "split")


def test_the_default_maximum_is_ten_minutes_for_comfy_audio():
    # 601 s of audio as a broadcast view (no memory): refused on its shape.
    wave = torch.zeros(1, 1, 1).expand(1, 1, 16000 * 601)
    with pytest.raises(SonicInputError) as excinfo:
        audio_from_comfy({"waveform": wave, "sample_rate": 16000})
    assert_one_line_error(excinfo, "audio", "too long", "600")


def test_comfy_audio_gives_the_first_batch_item():
    wave = torch.zeros(2, 2, 8000)
    wave[0, 0] = 0.5
    audio = audio_from_comfy({"waveform": wave, "sample_rate": 8000})
    assert audio.sample_rate == 8000 and audio.samples.shape == (2, 8000)
    assert audio.samples[0, 0] == pytest.approx(0.5) and audio.samples[1, 0] == 0


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"sample_rate": 16000},
        {"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000},
        {"waveform": torch.zeros(1, 1, 800), "sample_rate": 16000},
        {"waveform": torch.zeros(1, 1, 8000)},
    ],
    ids=["none", "no-waveform", "empty", "0.05s", "no-rate"],
)
def test_unusable_comfy_audio_is_refused(value):
    with pytest.raises(SonicInputError) as excinfo:
        audio_from_comfy(value)
    assert_one_line_error(excinfo, "audio")


def test_16k_mono_keeps_pitch_and_length(make_tone):
    clip = make_tone(1.25, rate=44100, channels=2, freq=440.0)
    mono = to_16k_mono(clip)
    assert mono.dtype == np.float32 and mono.shape == (20000,)
    spectrum = np.abs(np.fft.rfft(mono))
    assert np.argmax(spectrum) * 16000 / mono.size == pytest.approx(440.0, abs=2.0)


def test_fit_length_trims_or_pads_with_silence(make_tone):
    clip = make_tone(1.0, rate=16000)
    longer = fit_length(clip, 1.5)
    assert longer.samples.shape == (1, 24000) and not longer.samples[0, 16000:].any()
    shorter = fit_length(clip, 0.5)
    assert shorter.samples.shape == (1, 8000)
    assert np.array_equal(shorter.samples[0], clip.samples[0, :8000])


def test_nan_samples_become_silence():
    audio = audio_from_comfy({"waveform": torch.full((1, 1, 4000), float("nan")), "sample_rate": 16000})
    assert isinstance(audio, Audio) and not np.isnan(audio.samples).any()
