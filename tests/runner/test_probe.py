"""Measuring a speech clip's real length before its job is submitted."""

from __future__ import annotations

import math
import struct
import wave

import pytest
from comfyui_sonic.runner.probe import ProbeError, audio_duration

RATE = 16_000


def tone(seconds: float) -> list[float]:
    return [0.3 * math.sin(2 * math.pi * 220 * i / RATE) for i in range(int(seconds * RATE))]


def write_wav(path, seconds: float):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(struct.pack("<h", int(s * 32767)) for s in tone(seconds)))
    return path


def write_aac(path, seconds: float, container_format: str, silent_seconds: float = 0.0):
    """Encode silence then noise with PyAV; raw ADTS has no duration in its header, MP4 (m4a) has."""
    import av
    import numpy as np

    noise = np.random.default_rng(0).uniform(-0.5, 0.5, int((seconds - silent_seconds) * RATE))
    pcm = np.concatenate([np.zeros(int(silent_seconds * RATE)), noise]).astype(np.float32)[None, :]
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        for start in range(0, pcm.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(pcm[:, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_a_wav_file_reports_its_length(tmp_path):
    assert audio_duration(write_wav(tmp_path / "speech.wav", 2.5)) == pytest.approx(2.5, abs=1e-3)


def test_exact_decoding_agrees_with_the_header(tmp_path):
    path = write_wav(tmp_path / "speech.wav", 1.25)
    assert audio_duration(path, exact=True) == pytest.approx(audio_duration(path), abs=1e-3)


def test_an_m4a_file_reports_its_length(tmp_path):
    assert audio_duration(write_aac(tmp_path / "speech.m4a", 3.0, "mp4")) == pytest.approx(3.0, abs=0.1)


def test_raw_aac_without_a_reliable_header_is_measured_by_decoding(tmp_path):
    # ffmpeg only estimates raw ADTS duration from the bitrate of the first packets: a quiet start
    # makes that estimate far too long (about 10 s here); the probe counts decoded samples instead
    # (within the encoder's priming/padding of at most two 1024-sample frames)
    path = write_aac(tmp_path / "speech.aac", 6.0, "adts", silent_seconds=2.0)
    assert audio_duration(path) == pytest.approx(6.0, abs=2048 / RATE)


def test_a_missing_file_is_a_one_line_error_naming_it(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(ProbeError, match=r"nope\.wav: file not found"):
        audio_duration(missing)


def test_a_file_that_is_not_audio_is_a_one_line_error_naming_it(tmp_path):
    junk = tmp_path / "speech.wav"
    junk.write_text("this is not audio at all\n" * 20)
    with pytest.raises(ProbeError) as err:
        audio_duration(junk)
    assert "speech.wav" in str(err.value) and "\n" not in str(err.value)


def test_an_image_has_no_audio_stream(tmp_path):
    from PIL import Image

    picture = tmp_path / "portrait.png"
    Image.new("RGB", (32, 32), "white").save(picture)
    with pytest.raises(ProbeError, match=r"portrait\.png: the file has no audio stream"):
        audio_duration(picture)


def test_a_pcm_wav_is_measured_from_its_header_without_ffmpeg(tmp_path, monkeypatch):
    # Opening a file with FFmpeg probes it (~8 ms of CPU, most of an API submission's);
    # a PCM WAV's header already holds its exact sample count.
    import av

    path = write_wav(tmp_path / "speech.wav", 1.5)
    monkeypatch.setattr(av, "open", lambda *a, **k: pytest.fail("a PCM WAV was opened with FFmpeg"))
    assert audio_duration(path, exact=True) == pytest.approx(1.5, abs=1 / RATE)


def test_a_wav_cut_short_of_its_header_counts_the_samples_it_has(tmp_path):
    path = write_wav(tmp_path / "speech.wav", 2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - RATE * 2])  # the last second is missing; the header says 2 s
    assert audio_duration(path, exact=True) == pytest.approx(1.0, abs=0.01)


def test_a_float_wav_is_measured_by_ffmpeg(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "speech.wav"
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_f32le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, RATE * 3 // 4), np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    assert audio_duration(path, exact=True) == pytest.approx(0.75, abs=1e-3)
