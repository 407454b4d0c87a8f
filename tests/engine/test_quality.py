"""Quality measures on generated clips: offset, mouth/audio correlation, identity, flicker."""

from __future__ import annotations

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.encode import VideoWriter
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.quality import measure_frames, measure_video, ssim_map
from comfyui_sonic.nodes.engine.types import Audio

from .lite.lite_clips import astronaut, prepared, render

FPS = 25.0


@pytest.fixture(scope="module")
def data():
    return prepared(4.0, seed=2, resolution=256)


@pytest.fixture(scope="module")
def clip(data):
    return render(data, seed=1)


def report_for(frames, data):
    return measure_frames(frames, data.audio_16k, 16000, FPS, data.image)


def test_a_lite_clip_is_in_sync_follows_the_audio_and_keeps_the_face(data, clip):
    report = report_for(clip, data)
    assert report.frames == len(clip) == 100
    assert abs(report.av_offset_seconds) < 1.0 / FPS
    assert report.mouth_audio_correlation > 0.7
    assert report.identity_ssim > 0.85
    assert report.flicker < 2.0
    assert any("A/V offset" in line for line in report.lines())


def test_an_injected_offset_is_measured_within_a_frame(data, clip):
    late = clip[np.clip(np.arange(len(clip)) - 5, 0, None)]  # 200 ms late
    report = report_for(late, data)
    assert report.av_offset_seconds == pytest.approx(0.2, abs=1.0 / FPS)
    assert report.mouth_audio_correlation_at_offset > report.mouth_audio_correlation


def test_flicker_and_a_different_face_show_in_the_numbers(data, clip):
    rng = np.random.default_rng(1)
    jitter = rng.integers(-12, 13, (len(clip), 1, 1, 1))
    flickering = np.clip(clip.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
    assert report_for(flickering, data).flicker > 5 * report_for(clip, data).flicker
    other = measure_frames(clip, data.audio_16k, 16000, FPS, np.ascontiguousarray(astronaut()[:, ::-1]))
    assert other.identity_ssim < report_for(clip, data).identity_ssim - 0.1


def test_an_mp4_with_its_audio_is_measured_like_the_frames(tmp_path, data, clip):
    path = tmp_path / "clip.mp4"
    audio = Audio(samples=data.audio_16k[None], sample_rate=16000)
    with VideoWriter(
        path, clip.shape[2], clip.shape[1], FPS, crf=18, preset="ultrafast", audio=audio
    ) as writer:
        writer.write(clip)
    report = measure_video(path, data.image)
    assert report.frames == len(clip)
    assert abs(report.av_offset_seconds) <= 1.0 / FPS  # AAC priming must not shift the audio
    assert report.identity_ssim > 0.8


def test_a_missing_file_is_a_clear_error(tmp_path, data):
    with pytest.raises(SonicInputError, match="^video: .* does not exist"):
        measure_video(tmp_path / "nope.mp4", data.image)


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (64, 64)).astype(np.float32)
    assert np.allclose(ssim_map(a, a), 1.0, atol=1e-4)
    assert ssim_map(a, rng.uniform(0, 255, (64, 64)).astype(np.float32)).mean() < 0.2


def test_the_cli_prints_the_measures_of_an_mp4(tmp_path, data, clip):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    video, reference = tmp_path / "clip.mp4", tmp_path / "face.png"
    Image.fromarray(data.image).save(reference)
    audio = Audio(samples=data.audio_16k[None], sample_rate=16000)
    with VideoWriter(video, clip.shape[2], clip.shape[1], FPS, preset="ultrafast", audio=audio) as writer:
        writer.write(clip)
    script = Path(__file__).resolve().parents[2] / "scripts" / "measure_quality.py"
    done = subprocess.run(
        [sys.executable, str(script), str(video), str(reference), "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["frames"] == len(clip) and abs(report["av_offset_seconds"]) <= 1.0 / FPS
    missing = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "none.mp4"), str(reference)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: video: ")
