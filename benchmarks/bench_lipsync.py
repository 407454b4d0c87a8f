"""Lip-Sync Correct's measuring on streamed frames, next to the lite render of the same clip.

What Lip-Sync Correct (mode auto) does with frames from Sonic Inference: they come in a frame
store with the face box SONIC_PreData found, so the mouth is read in a small region tracked
from that box, frame after frame, with no face detection. The clip here: the astronaut, speech-like
audio, a mouth that opens on the speech's own syllable timing (not the lite renderer's envelope),
the video made 80 ms late. Prints, for the face mesh (what the node uses) and dlib (its fallback
without the mesh's model files), the best of `--rounds` wall times, ms per frame and the offset
found; then the lite backend's render of the same clip (prepare excluded) for scale.

Frames from the lite backend itself are not measured at all: their timing is exact by construction
(Lip-Sync Correct says "lite frames are in sync" and passes them on). The measuring matters for
the sonic backend, whose render on a GPU takes tens of seconds per 10 s clip.

Run: .venv/bin/python benchmarks/bench_lipsync.py [--seconds 10] [--resolution 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.conftest  # noqa: E402, F401  (the pack importable as comfyui_sonic from a checkout)

# isort: split
from comfyui_sonic.nodes.engine.face import default_analyzer, mesh_analyzer  # noqa: E402
from comfyui_sonic.nodes.engine.lipsync import correct_source  # noqa: E402

from tests.engine.lite.lite_clips import late_by, prepared, render, syllable_mouth_store  # noqa: E402

LATE_S = 0.08


def _best(fn, rounds: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    fps = 25.0
    data = prepared(args.seconds, seed=5, resolution=args.resolution)
    with tempfile.TemporaryDirectory() as folder:
        store = syllable_mouth_store(data, seed=5, root=Path(folder), fps=fps)
        w, h, frames = store.info.width, store.info.height, len(store)
        late = late_by(store, round(LATE_S * fps))
        print(f"{args.seconds:g} s clip at {w}x{h}, {frames} frames, video {LATE_S * 1000:.0f} ms late")
        for name, analyzer in (("face mesh", mesh_analyzer()), ("dlib", default_analyzer())):
            correct_source(late, mode="auto", analyzer=analyzer)  # models loaded, caches warm
            seconds, result = _best(
                lambda a=analyzer: correct_source(late, mode="auto", analyzer=a), args.rounds
            )
            print(
                f"  Lip-Sync Correct, {name:<9}: {seconds:.2f} s ({1000 * seconds / frames:.1f} ms a frame), "
                f"offset found {1000 * result.offset_seconds:+.0f} ms"
            )
        seconds, _ = _best(lambda: render(data), args.rounds)
        print(f"  lite render of the same clip: {seconds:.2f} s ({1000 * seconds / frames:.1f} ms a frame)")


if __name__ == "__main__":
    main()
