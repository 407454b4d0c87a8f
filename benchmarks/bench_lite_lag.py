"""Lite lip-sync lag, measured by the independent probe (tests/engine/lite/lag_probe.py).

Prints, per face and sound, the lag at which the inner lips (face mesh on every rendered frame)
best follow the audio's RMS, over -200..+200 ms in 5 ms steps [target: |lag| <= 40 ms, issue 13],
the correlation there and at 0 ms, and as a control the same clip with the sound moved 120 ms
later (the probe must then read about -120 ms). Each clip is read twice: by the face mesh (what
the test uses) and by dlib's 68-point predictor (a model the lite rig was not placed with).
Faces: the bundled demo portrait and Grace Hopper (matplotlib's sample photo). Sounds: the tests'
speech-like syllables with pauses (6 s) and the bundled demo speech.

Run: .venv/bin/python benchmarks/bench_lite_lag.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from PIL import Image  # noqa: E402

import tests.conftest  # noqa: E402,F401  (loads the repo as the comfyui_sonic package, as the tests do)
from tests.engine.lite.lag_probe import READERS, inner_lip_gaps, lag_of  # noqa: E402
from tests.engine.lite.lite_clips import RATE, render, speech_like  # noqa: E402
from tests.faceset import portraits  # noqa: E402

FPS = 25.0


def faces() -> dict[str, np.ndarray]:
    found = {"demo": np.asarray(Image.open(ROOT / "demo" / "sonic_example_face.jpg").convert("RGB"))}
    found.update({p.name: p.image for p in portraits() if p.name == "hopper"})
    return found


def sounds() -> dict[str, tuple[np.ndarray, int]]:
    wav, rate = soundfile.read(ROOT / "demo" / "sonic_example_speech.wav", dtype="float32", always_2d=True)
    return {"speech-like 6 s": (speech_like(6.0, seed=2), RATE), "demo speech": (wav.mean(axis=1), rate)}


def main() -> None:
    from comfyui_sonic.nodes.engine.prepare import prepare
    from comfyui_sonic.nodes.engine.types import Audio

    for face_name, image in faces().items():
        for sound_name, (samples, rate) in sounds().items():
            start = time.perf_counter()
            data = prepare(image, Audio(samples=samples[None], sample_rate=rate), min_resolution=256)
            frames = render(data, seed=1, fps=FPS)
            audio = data.audio_16k
            pad = round(0.12 * 16000)
            late_sound = np.concatenate([np.zeros(pad, np.float32), audio[:-pad]])
            for reader in READERS:
                gaps = inner_lip_gaps(frames, reader)
                lag, control = lag_of(gaps, audio, 16000, FPS), lag_of(gaps, late_sound, 16000, FPS)
                print(
                    f"{face_name:7s} {sound_name:16s} {reader:5s} {lag}   control (sound +120 ms): "
                    f"{1000 * control.seconds:+.0f} ms   [{time.perf_counter() - start:.1f} s]"
                )


if __name__ == "__main__":
    main()
