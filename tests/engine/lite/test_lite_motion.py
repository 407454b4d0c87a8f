"""Blinks, head motion and brows: seeded, irregular, and scaled by motion_scale."""

from __future__ import annotations

import numpy as np
from comfyui_sonic.nodes.engine.lite.motion import plan_motion


def test_same_seed_same_performance_and_seed_zero_is_a_seed():
    a, b = plan_motion(250, 25.0, 0, 1.0), plan_motion(250, 25.0, 0, 1.0)
    c = plan_motion(250, 25.0, 1, 1.0)
    assert np.array_equal(a.head, b.head) and np.array_equal(a.blink, b.blink)
    assert not np.array_equal(a.head, c.head)


def test_blinks_happen_every_few_seconds_and_fully_close():
    blink = plan_motion(25 * 30, 25.0, 3, 1.0).blink
    closed = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 4 <= len(closed) <= 16  # 30 s: one every ~2-7 s
    assert blink.max() > 0.8
    assert np.mean(blink > 0.1) < 0.15  # eyes are open most of the time


def test_motion_scale_scales_head_motion_and_zero_means_none():
    one = plan_motion(250, 25.0, 5, 1.0).head
    two = plan_motion(250, 25.0, 5, 2.0).head
    assert np.allclose(two, 2 * one, atol=1e-7)
    assert np.abs(one).max() > 0
    assert not plan_motion(250, 25.0, 5, 0.0).head.any()


def test_a_longer_clip_begins_with_the_same_motion():
    short, long = plan_motion(100, 25.0, 9, 1.0), plan_motion(300, 25.0, 9, 1.0)
    assert np.allclose(short.head, long.head[:100]) and np.allclose(short.blink, long.blink[:100])


def test_clips_shorter_than_the_smoothing_windows_work():
    for n in (1, 3, 10):
        track = plan_motion(n, 25.0, 0, 1.0, emphasis=np.linspace(0, 1, n))
        assert track.head.shape == (n, 4) and track.blink.shape == (n,)
