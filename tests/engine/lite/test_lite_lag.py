"""Lite lip sync, measured from outside the renderer: the rendered mouth follows the sound within 40 ms.

Issue 13's done-when: whatever the mouth painter and jaw do, "the independent lip-sync probe
still finds |lag| <= 40 ms". The probe (lag_probe.py) reads the inner lips with the face mesh on
every rendered frame and correlates them with the audio's RMS, so it checks what a viewer sees,
not the renderer's own envelope. benchmarks/bench_lite_lag.py prints the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.prepare import prepare
from comfyui_sonic.nodes.engine.types import Audio
from PIL import Image

from ...faceset import portraits
from .lag_probe import inner_lip_gaps, lag_of
from .lite_clips import RATE, render, speech_like

ROOT = Path(__file__).resolve().parents[3]
FPS = 25.0
SECONDS = 6.0  # irregular syllables with two pauses (lite_clips.syllables)
ALLOWED = 0.04  # seconds: one frame at 25 fps


def face(name: str) -> np.ndarray:
    if name == "demo":
        return np.asarray(Image.open(ROOT / "demo" / "sonic_example_face.jpg").convert("RGB"))
    found = [p.image for p in portraits() if p.name == name]
    if not found:
        pytest.skip(f"{name}: its photo comes with matplotlib (a dev dependency), not installed")
    return found[0]


@pytest.fixture(scope="module", params=["demo", "hopper"])
def clip(request):
    """(audio at 16 kHz, the mouth opening the probe read from each rendered frame)."""
    samples = speech_like(SECONDS, seed=2)
    data = prepare(face(request.param), Audio(samples=samples[None], sample_rate=RATE), min_resolution=256)
    frames = render(data, seed=1, fps=FPS)
    return data.audio_16k, inner_lip_gaps(frames)


def delayed(samples: np.ndarray, seconds: float) -> np.ndarray:
    """The audio `seconds` later (< 0: earlier), same length, silence where it was moved from."""
    pad = round(abs(seconds) * RATE)
    silence = np.zeros(pad, np.float32)
    return np.concatenate([silence, samples[:-pad]] if seconds > 0 else [samples[pad:], silence])


def test_the_rendered_mouth_follows_the_sound_within_40_ms(clip):
    audio, gaps = clip
    lag = lag_of(gaps, audio, RATE, FPS)
    print(lag)
    assert abs(lag.seconds) <= ALLOWED, lag
    assert lag.correlation > 0.6, lag  # the mouth clearly follows the loudness


def test_the_probe_sees_a_120_ms_offset(clip):
    """The check can fail: with the sound 120 ms late the video is 120 ms early, and the probe says so."""
    audio, gaps = clip
    lag = lag_of(gaps, delayed(audio, 0.12), RATE, FPS)
    assert lag.seconds == pytest.approx(-0.12, abs=0.01), lag
    assert abs(lag.seconds) > ALLOWED
    late_video = lag_of(gaps, delayed(audio, -0.12), RATE, FPS)  # the sound 120 ms early
    assert late_video.seconds == pytest.approx(0.12, abs=0.01), late_video


def test_the_probe_sees_a_mouth_two_frames_late(clip):
    """A renderer whose mouth lagged by two frames (80 ms at 25 fps) would fail the 40 ms check."""
    audio, gaps = clip
    late = gaps[np.clip(np.arange(len(gaps)) - 2, 0, None)]
    lag = lag_of(late, audio, RATE, FPS)
    assert lag.seconds == pytest.approx(0.08, abs=0.01), lag
    assert abs(lag.seconds) > ALLOWED


def test_a_mouth_unrelated_to_the_sound_does_not_correlate(clip):
    audio, gaps = clip
    shuffled = np.random.default_rng(0).permutation(gaps)
    assert lag_of(shuffled, audio, RATE, FPS).correlation < 0.6
