"""An independent lip-sync probe: how late (or early) a rendered mouth follows the sound.

Why independent: the lite backend drives its mouth from its own loudness envelope, so a test
that compared the mouth with that envelope would pass whatever timing the renderer had. This
probe only looks at what a viewer gets, the frames and the audio:
- the mouth: MediaPipe's face mesh (nodes/engine/facemesh.py, mapped to dlib's 68 points) is run
  on every rendered frame, found afresh by BlazeFace each frame (no tracking state shared with
  the renderer), and the inner-lip gap (61-67, 62-66, 63-65) is divided by the eye distance.
  reader="dlib" reads the same points with dlib's HOG detector and 68-point predictor instead, a
  second opinion from a model the lite rig was not placed with;
- the sound: plain RMS of the samples over each frame's display interval [i/fps, (i+1)/fps).
The lag is the shift of the RMS windows (5 ms steps over -200..+200 ms) at which the two series
correlate best (Pearson r). Positive lag: the video is late (the mouth moves after the sound).
Windows are shifted in the audio itself, so the lag is resolved far below a frame (40 ms at 25 fps)
without interpolating the mouth.

Used by tests/engine/lite/test_lite_lag.py and benchmarks/bench_lite_lag.py (which prints it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from comfyui_sonic.nodes.engine.blazeface import BlazeFaceAnalyzer
from comfyui_sonic.nodes.engine.face import EYE_LEFT, EYE_RIGHT, DlibFaceAnalyzer, FaceAnalyzer

MAX_LAG = 0.2  # seconds either way
STEP = 0.005  # seconds between the lags tried


@dataclass(frozen=True)
class Lag:
    seconds: float  # + : video late
    correlation: float  # Pearson r at that lag
    at_zero: float  # Pearson r with no shift

    def __str__(self) -> str:
        return f"lag {1000 * self.seconds:+.0f} ms (r {self.correlation:.2f}; r at 0 ms {self.at_zero:.2f})"


READERS = ("mesh", "dlib")


@lru_cache(maxsize=2)
def _reader(name: str) -> FaceAnalyzer:
    return BlazeFaceAnalyzer() if name == "mesh" else DlibFaceAnalyzer()


def inner_lip_gaps(frames: np.ndarray, reader: str = "mesh") -> np.ndarray:
    """[N] inner-lip gap in eye distances, read from each frame on its own (reader: mesh or dlib)."""
    if reader not in READERS:
        raise ValueError(f"reader: {reader!r} is not one of {READERS}")
    detector = _reader(reader)
    gaps = []
    for i, frame in enumerate(frames):
        boxes = detector.detect(frame)
        if not boxes:
            raise AssertionError(f"lag probe: no face found in frame {i}")
        points = np.asarray(detector.landmarks(frame, boxes[0]), dtype=np.float64)
        gap = np.linalg.norm(points[[61, 62, 63]] - points[[67, 66, 65]], axis=1).mean()
        eyes = np.linalg.norm(points[EYE_LEFT].mean(axis=0) - points[EYE_RIGHT].mean(axis=0))
        gaps.append(gap / max(eyes, 1e-6))
    return np.asarray(gaps)


def rms_per_frame(
    samples: np.ndarray, rate: int, fps: float, n_frames: int, shift: float = 0.0
) -> np.ndarray:
    """RMS of the audio over [i/fps - shift, (i+1)/fps - shift) for each frame i (zeros outside)."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    edges = np.round((np.arange(n_frames + 1) / fps - shift) * rate).astype(np.int64)
    edges = np.clip(edges, 0, len(x))
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    counts = np.maximum(np.diff(edges), 1)
    return np.sqrt((power[edges[1:]] - power[edges[:-1]]) / counts)


def lag_of(gaps: np.ndarray, samples: np.ndarray, rate: int, fps: float) -> Lag:
    """The lag (within +-MAX_LAG) at which the mouth opening best follows the audio's RMS."""
    n = len(gaps)
    k = round(MAX_LAG / STEP)
    shifts = np.arange(-k, k + 1) * STEP
    # Frames whose shifted window leaves the audio would compare against silence: leave them out.
    margin = int(np.ceil(MAX_LAG * fps))
    keep = slice(margin, n - margin)

    def r(shift: float) -> float:
        return float(np.corrcoef(gaps[keep], rms_per_frame(samples, rate, fps, n, shift)[keep])[0, 1])

    corr = np.array([r(s) for s in shifts])
    best = int(np.argmax(corr))
    return Lag(seconds=float(shifts[best]) + 0.0, correlation=float(corr[best]), at_zero=float(corr[k]))
