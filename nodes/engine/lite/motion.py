"""Everything a speaking face does besides the mouth: blinks, head motion, brows.

A still face with a moving mouth reads as a mask. People blink every few
seconds (irregularly), the head drifts and nods a little, more on stressed
syllables, and brows lift with emphasis. All of it is drawn from one seeded
generator, so a seed always gives the same performance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

# Head motion amplitudes at motion_scale 1 (translation in face widths, angles in radians).
_SHIFT_X = 0.012
_SHIFT_Y = 0.008
_ROLL = np.deg2rad(1.6)
_SCALE = 0.008
_NOD = 0.010  # extra downward shift (face widths) on emphasis
_BROW = 1.0  # brow raise at full emphasis (0..1 units, the warp sets the pixel size)

# Blink timing (seconds).
_BLINK_CLOSE, _BLINK_HOLD, _BLINK_OPEN = 0.075, 0.035, 0.13
_SUBSAMPLES = 4  # blink curve averaged over each frame's interval: a 25 fps blink still shows


@dataclass(frozen=True)
class MotionTrack:
    blink: np.ndarray  # [N] 0 open .. 1 closed
    head: np.ndarray  # [N, 4] dx, dy (face widths), roll (radians), scale delta
    brow: np.ndarray  # [N] 0..1 raise


def seeded_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """Independent generators per aspect (blinks, head, brows), so a longer clip keeps the
    same beginning; any int seed (ComfyUI seeds go up to 2**64) is valid, 0 included."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed) % (2**64)).spawn(n)]


def blink_times(duration: float, rng: np.random.Generator) -> list[float]:
    """Start times of blinks: irregular, about every 2-6 s, sometimes a double blink."""
    times: list[float] = []
    t = float(rng.uniform(0.6, 2.8))
    while t < duration:
        times.append(t)
        if rng.random() < 0.12:
            times.append(t + 0.38)
        t += float(min(7.0, 1.8 + rng.exponential(2.2)))
    return times


def _blink_curve(t: np.ndarray, starts: list[float]) -> np.ndarray:
    out = np.zeros_like(t)
    total = _BLINK_CLOSE + _BLINK_HOLD + _BLINK_OPEN
    for s in starts:
        u = t - s
        inside = (u >= 0) & (u < total)
        if not inside.any():
            continue
        v = u[inside]
        close = np.clip(v / _BLINK_CLOSE, 0, 1)
        opening = np.clip((v - _BLINK_CLOSE - _BLINK_HOLD) / _BLINK_OPEN, 0, 1)
        shape = np.where(
            v < _BLINK_CLOSE + _BLINK_HOLD, np.sin(close * np.pi / 2), np.cos(opening * np.pi / 2)
        )
        out[inside] = np.maximum(out[inside], shape)
    return out


def _smooth_noise(t: np.ndarray, rng: np.random.Generator, n: int = 4) -> np.ndarray:
    """Sum of slow sinusoids (0.07-0.55 Hz) with random phases: unit-ish amplitude drift."""
    freqs = rng.uniform(0.07, 0.55, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.uniform(0.6, 1.0, n)
    amps /= np.sqrt(np.sum(amps**2) / 2.0)
    return np.sum(amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]), axis=0)


def plan_motion(
    n_frames: int, fps: float, seed: int, motion_scale: float, emphasis: np.ndarray | None = None
) -> MotionTrack:
    """Blinks, head pose and brow raise per frame for a clip of `n_frames` at `fps`.

    motion_scale scales head motion and brow lifts (0: a still head); blinks stay,
    since a face that never blinks looks dead.
    """
    blink_rng, head_rng, brow_rng = seeded_rngs(seed, 3)
    t = (np.arange(n_frames, dtype=np.float64) + 0.5) / fps
    duration = n_frames / fps
    emph = np.zeros(n_frames) if emphasis is None else np.asarray(emphasis, dtype=np.float64)

    starts = blink_times(duration, blink_rng)
    offsets = (np.arange(_SUBSAMPLES) + 0.5) / _SUBSAMPLES - 0.5
    sub = t[:, None] + offsets[None, :] / fps
    blink = _blink_curve(sub.reshape(-1), starts).reshape(n_frames, _SUBSAMPLES).mean(axis=1)

    ramp = np.clip(t / 0.5, 0.0, 1.0)  # start from the input pose, ease into motion
    ramp = ramp * ramp * (3 - 2 * ramp)
    # Emphasis above its slow average: stressed syllables nod the head and lift the brows.
    slow = uniform_filter1d(emph, max(1, int(fps * 2)), mode="nearest") if n_frames else emph
    accent = np.clip(emph - slow, 0.0, None)
    accent = accent / max(1e-6, float(accent.max())) if accent.size else accent

    head = np.zeros((n_frames, 4))
    head[:, 0] = _SHIFT_X * _smooth_noise(t, head_rng)
    head[:, 1] = _SHIFT_Y * _smooth_noise(t, head_rng) + _NOD * accent
    head[:, 2] = _ROLL * _smooth_noise(t, head_rng)
    head[:, 3] = _SCALE * _smooth_noise(t, head_rng)
    head *= (ramp * float(motion_scale))[:, None]

    brow_noise = np.clip(_smooth_noise(t, brow_rng, 3) - 0.8, 0.0, None)  # occasional spontaneous lifts
    brow = np.clip(_BROW * (0.7 * accent + 0.5 * brow_noise), 0.0, 1.0) * ramp * float(motion_scale)
    return MotionTrack(
        blink=blink.astype(np.float32), head=head.astype(np.float32), brow=brow.astype(np.float32)
    )
