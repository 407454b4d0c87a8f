"""Test data for the lite backend, lip-sync and quality tests: a real face and speech-like audio.

Import it relatively (tests are packages): `from .lite_clips import ...`, `from ..engine.lite.lite_clips import ...`.
The audio is irregular on purpose: regular syllables would give the lip-sync
correlation equally good peaks one syllable period apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from comfyui_sonic.nodes.engine.frames import ClipInfo, FrameStore, FrameStoreWriter, RemappedSource
from comfyui_sonic.nodes.engine.lite.backend import LiteBackend, mouth_frame
from comfyui_sonic.nodes.engine.prepare import prepare
from comfyui_sonic.nodes.engine.progress import NullProgress
from comfyui_sonic.nodes.engine.types import Audio, GenerationParams, SonicData

RATE = 16000
# (F1, F2) of a few vowels: open "a", spread "i", rounded "u", "e", "o".
VOWELS = ((800, 1250), (300, 2300), (320, 800), (500, 1900), (480, 900))


def syllables(seconds: float, seed: int = 0) -> list[tuple[float, float, int]]:
    """(start, length, vowel) of irregular syllables with short gaps and longer pauses."""
    rng = np.random.default_rng(seed)
    out, t, since_pause = [], 0.3, 0.0
    while t < seconds - 0.3:
        length = float(rng.uniform(0.12, 0.3))
        out.append((t, min(length, seconds - 0.2 - t), int(rng.integers(len(VOWELS)))))
        t += length + float(rng.uniform(0.04, 0.16))
        since_pause += length
        if since_pause > rng.uniform(1.2, 2.2):
            t += float(rng.uniform(0.35, 0.7))
            since_pause = 0.0
    return out


def speech_like(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Mono float32: voiced syllables (harmonics of ~130 Hz shaped by vowel formants)."""
    rng = np.random.default_rng(seed + 1000)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    f0 = 130 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    signal = np.zeros(n)
    for start, length, vowel in syllables(seconds, seed):
        i0, i1 = round(start * rate), round((start + length) * rate)
        if i1 <= i0:
            continue
        f1, f2 = VOWELS[vowel]
        seg = np.zeros(i1 - i0)
        for k in range(1, 30):
            freq = k * 130.0
            gain = np.exp(-(((freq - f1) / 150) ** 2)) + 0.6 * np.exp(-(((freq - f2) / 200) ** 2)) + 0.05 / k
            seg += gain * np.sin(k * phase[i0:i1])
        shape = np.sin(np.linspace(0, np.pi, i1 - i0)) ** 0.7
        signal[i0:i1] += seg * shape * rng.uniform(0.6, 1.0)
    signal = 0.3 * signal / max(1e-9, np.abs(signal).max())
    signal += 0.001 * rng.standard_normal(n)
    return signal.astype(np.float32)


def speech_envelope(seconds: float, fps: float, seed: int = 0) -> np.ndarray:
    """1 where a syllable sounds at each frame's centre, else 0 (the ground truth for the mouth)."""
    centres = (np.arange(round(seconds * fps)) + 0.5) / fps
    on = np.zeros(len(centres))
    for start, length, _ in syllables(seconds, seed):
        on[(centres >= start + 0.03) & (centres < start + length - 0.03)] = 1.0
    return on


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def prepared(seconds: float = 4.0, seed: int = 0, resolution: int = 256, detector: str = "dlib") -> SonicData:
    """The astronaut prepared for the lite backend. dlib's 68 points by default: the geometry
    these tests measure (chin, jaw, collar rows, in crop pixels) is placed from them. With the
    default detector the chin lands ~20 px higher in a 512 px crop: BlazeFace's box is 9 % wider
    (a larger crop, a smaller face in it) and the face mesh's chin (point 152, its lowest, the
    nearest to dlib's: not a mapping error) is 4 image px above dlib's on this photo."""
    samples = speech_like(seconds, seed)
    audio = Audio(samples=samples[None], sample_rate=RATE)
    return prepare(astronaut(), audio, min_resolution=resolution, detector=detector)


def render(data: SonicData, **params) -> np.ndarray:
    """All frames of a lite clip, uint8 [N, H, W, 3]."""
    chunks = LiteBackend().generate(data, GenerationParams(**params), NullProgress())
    return np.concatenate(list(chunks))


def syllable_mouth_store(data: SonicData, seed: int, root: Path, fps: float = 25.0) -> FrameStore:
    """An in-sync clip of `data` in a frame store, with the face box SONIC_PreData found (as
    SONIC_FRAMES carry it). The mouth opens on the speech's ground-truth syllable timing (smoothed
    without phase shift), drawn with the lite renderer's still-frame mouth: timing that does not
    come from the lite renderer's own audio analysis, for measuring lip-sync against."""
    from scipy.ndimage import gaussian_filter1d

    seconds = data.audio.samples.shape[-1] / data.audio.sample_rate
    opening = gaussian_filter1d(speech_envelope(seconds, fps, seed=seed), 1.0) * 0.9
    h, w = data.image.shape[:2]
    with FrameStoreWriter(w, h, len(opening), root=root) as writer:
        for o in opening:
            writer.write(mouth_frame(data.image, data.landmarks, float(o)))
        info = ClipInfo(w, h, len(opening), fps, audio=data.audio, face_box=data.face_box, origin="test")
        return writer.finish(info)


def late_by(source, n: int) -> RemappedSource:
    """The clip with the video n frames late (n < 0: early), same length."""
    return RemappedSource(source, np.clip(np.arange(len(source)) - n, 0, len(source) - 1))
