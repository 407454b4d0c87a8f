"""Sentence clips joined into one track without clicks."""

from __future__ import annotations

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.tts.join import join
from comfyui_sonic.nodes.engine.types import Audio


def sine(seconds: float, rate: int, phase: float, freq: float = 220.0) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio(
        samples=(0.5 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)[None], sample_rate=rate
    )


def biggest_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x)).max())


def test_clips_cut_mid_wave_join_without_a_jump():
    rate = 24_000
    a = sine(0.2 + 1 / 880, rate, 0.0)  # ends near a crest (+0.5)
    b = sine(0.2, rate, -np.pi / 2)  # starts at a trough (-0.5)
    butted = np.concatenate([a.samples[0], b.samples[0]])
    assert biggest_step(butted) > 0.9  # the click a plain concatenation makes
    joined = join([a, b]).samples[0]
    own = max(biggest_step(a.samples[0]), biggest_step(b.samples[0]))
    assert biggest_step(joined) <= 1.5 * own
    assert abs(joined[0]) < 1e-3 and abs(joined[-1]) < 1e-3  # the track starts and ends at zero too


def test_the_crossfade_costs_only_milliseconds():
    rate = 22_050
    clips = [sine(0.5, rate, 1.0) for _ in range(5)]
    joined = join(clips)
    assert joined.duration == pytest.approx(2.5, abs=5 * 0.015)


def test_clips_at_other_rates_are_resampled_to_the_first_ones():
    joined = join([sine(0.5, 16_000, 0.0), sine(0.5, 24_000, 0.0), sine(0.5, 44_100, 0.0)])
    assert joined.sample_rate == 16_000 and joined.samples.shape[0] == 1
    assert joined.duration == pytest.approx(1.5, abs=0.05)


def test_a_pause_puts_silence_between_sentences():
    rate = 16_000
    joined = join([sine(0.3, rate, 0.0), sine(0.3, rate, 0.0)], pause_s=0.25)
    middle = joined.samples[0][int(0.31 * rate) : int(0.54 * rate)]
    assert joined.duration == pytest.approx(0.85, abs=0.01) and np.abs(middle).max() < 1e-6
