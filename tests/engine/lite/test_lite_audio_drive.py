"""What the mouth does for silence, loud vowels, spread and rounded vowels."""

from __future__ import annotations

import numpy as np
from comfyui_sonic.nodes.engine.lite.audio_drive import mouth_track

RATE = 16000


def vowel(seconds: float, f1: float, f2: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    wave = sum(
        (np.exp(-(((k * 130 - f1) / 150) ** 2)) + 0.8 * np.exp(-(((k * 130 - f2) / 200) ** 2)) + 0.02)
        * np.sin(2 * np.pi * k * 130 * t)
        for k in range(1, 30)
    )
    return (level * wave / np.abs(wave).max()).astype(np.float32)


def test_silence_keeps_the_mouth_closed():
    track = mouth_track(np.zeros(RATE * 2, np.float32), 25.0, 50)
    assert track.open.shape == (50,) and np.all(track.open == 0)


def test_the_mouth_opens_on_sound_and_shuts_in_the_pause_after_it():
    audio = np.concatenate([vowel(1.0, 800, 1250), np.zeros(RATE, np.float32)])
    track = mouth_track(audio, 25.0, 50)
    assert track.open[5:20].min() > 0.5
    assert track.open[32:].max() == 0


def test_spread_and_rounded_vowels_pull_the_width_opposite_ways():
    ee, oo = vowel(0.6, 300, 2300), vowel(0.6, 320, 800)
    audio = np.concatenate([ee, oo, ee, oo])
    track = mouth_track(audio, 25.0, 60)
    ee_frames = np.r_[4:11, 34:41]
    oo_frames = np.r_[19:26, 49:56]
    assert track.wide[ee_frames].mean() > 0.2
    assert track.wide[oo_frames].mean() < -0.2
