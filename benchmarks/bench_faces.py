"""Face detection on the measured set (tests/faceset.py): recall, false positives and time per detector.

Prints one table: a row per image class, for each detector "found/total" on face classes (the
face counts only when a box that SONIC_PreData keeps contains its centre) and "refused/total" on
non-face classes, then recall on photos and on the stylised set, false positives, the mean
time per image and the time for one 2000 x 3000 photo (the issue's target: < 0.3 s) and for a
2000 x 3000 image with no face (the whole tile pyramid runs: the worst case).
A last block checks landmarks on every face the detector found: the share whose 68 points have
a face's layout (eyes above nose above mouth; see prepare._face_layout).

Detectors: dlib (HOG), blazeface (MediaPipe BlazeFace TFLite), and yoloface (the official
yoloface_v5m.pt) when that file is in $SONIC_MODELS_DIR. Times are wall clock on whatever else
the machine runs; compare detectors within one run.

Run: .venv/bin/python benchmarks/bench_faces.py [--lfw N] [--threshold T] [--detectors dlib,blazeface]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from nodes.engine.prepare import _analyzer_for, _face_layout, plausible_faces  # noqa: E402
from tests.faceset import Sample, detection_set, hit, landscape, portraits  # noqa: E402


def _analyzers(names: list[str], threshold: float | None) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = _analyzer_for(name, None, threshold)
        except Exception as exc:  # noqa: BLE001 - a missing optional detector is a row note, not a crash
            print(f"{name}: not available ({str(exc).splitlines()[0]})")
    return out


def _run(analyzer, sample: Sample) -> tuple[bool, float, bool | None]:
    """(correct, seconds, landmark layout ok or None)."""
    start = time.perf_counter()
    boxes = plausible_faces(analyzer, sample.image, [])
    seconds = time.perf_counter() - start
    if sample.face is None:
        return not boxes, seconds, None
    hits = [b for b in boxes if hit(b, sample)]
    if not hits:
        return False, seconds, None
    return True, seconds, _face_layout(analyzer.landmarks(sample.image, hits[0]), hits[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=int, default=20, help="how many LFW face crops to include")
    parser.add_argument(
        "--threshold", type=float, default=None, help="face_threshold (default: each detector's)"
    )
    parser.add_argument("--detectors", default="dlib,blazeface,yoloface")
    parser.add_argument("--misses", action="store_true", help="list the samples each detector got wrong")
    parser.add_argument(
        "--render",
        action="store_true",
        help="also render every stylised face through lite (default detector)",
    )
    args = parser.parse_args()

    samples = detection_set(args.lfw)
    analyzers = _analyzers(args.detectors.split(","), args.threshold)
    for a in analyzers.values():  # load models and warm up outside the timings
        plausible_faces(a, samples[0].image, [])

    rows: dict[tuple[bool, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    results: dict[str, list[tuple[Sample, bool]]] = defaultdict(list)
    misses: dict[str, list[str]] = defaultdict(list)
    layout: dict[str, list[bool]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        key = (sample.face is None, sample.kind)
        for name, analyzer in analyzers.items():
            ok, seconds, lay = _run(analyzer, sample)
            rows[key][name].append(ok)
            results[name].append((sample, ok))
            times[name].append(seconds)
            if lay is not None:
                layout[name].append(lay)
            if not ok:
                misses[name].append(sample.name)

    names = list(analyzers)
    width = 14
    print(f"\n{'class':<22}" + "".join(f"{n:>{width}}" for n in names))
    for non_face in (False, True):
        print("non-faces (refused / total)" if non_face else "faces (found / total)")
        for (nf, kind), per in sorted(rows.items()):
            if nf != non_face:
                continue
            cells = "".join(f"{sum(per[n]):>{width - 4}}/{len(per[n]):<3}" for n in names)
            print(f"  {kind:<20}{cells}")

    def share(pred) -> dict[str, str]:
        out = {}
        for n in names:
            vals = [ok for sample, ok in results[n] if pred(sample)]
            out[n] = f"{100 * sum(vals) / max(1, len(vals)):.0f}% of {len(vals)}"
        return out

    summary = {
        "recall, photos": share(lambda s: s.face is not None and not s.stylised),
        "recall, stylised": share(lambda s: s.face is not None and s.stylised),
        "refused, non-faces": share(lambda s: s.face is None),
        "landmark layout ok": {n: f"{100 * np.mean(layout[n]):.0f}% of {len(layout[n])}" for n in names},
        "mean s / image": {n: f"{np.mean(times[n]):.3f}" for n in names},
    }
    big = cv2.resize(portraits()[0].image, (2000, 3000), interpolation=cv2.INTER_CUBIC)
    empty = landscape(2000, 3000, seed=2)
    summary["s 2000x3000 portrait"] = {}
    summary["s 2000x3000, no face"] = {}
    for n, a in analyzers.items():
        summary["s 2000x3000 portrait"][n] = f"{min(_timed(a, big) for _ in range(3)):.3f}"
        summary["s 2000x3000, no face"][n] = f"{min(_timed(a, empty) for _ in range(3)):.3f}"
    print()
    for label, per in summary.items():
        print(f"{label:<22}" + "".join(f"{per[n]:>{width}}" for n in names))
    if args.misses:
        for n in names:
            print(f"\n{n} wrong on: {', '.join(misses[n]) or 'nothing'}")
    if args.render:
        _render_stylised([s for s in samples if s.stylised])


def _render_stylised(samples: list[Sample]) -> None:
    """SONIC_PreData's engine with its defaults, then 1 s of the lite backend, for each stylised face."""
    from nodes.engine.errors import SonicInputError
    from nodes.engine.lite.backend import LiteBackend
    from nodes.engine.prepare import DEFAULT_DETECTOR, prepare
    from nodes.engine.progress import NullProgress
    from nodes.engine.types import Audio, GenerationParams

    t = np.arange(16000) / 16000
    voice = (0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    speech = Audio(samples=voice[None], sample_rate=16000)
    rendered, failed = 0, []
    for sample in samples:
        try:
            data = prepare(sample.image, speech, min_resolution=256)
            frames = np.concatenate(list(LiteBackend().generate(data, GenerationParams(), NullProgress())))
            x, y = sample.face
            inside = data.crop_box[0] <= x <= data.crop_box[2] and data.crop_box[1] <= y <= data.crop_box[3]
            if len(frames) == 25 and inside:
                rendered += 1
            else:
                failed.append(f"{sample.name} (crop misses the face)")
        except SonicInputError as exc:
            failed.append(f"{sample.name} ({exc})")
    print(
        f"\nlite render with detector={DEFAULT_DETECTOR}: {rendered}/{len(samples)} stylised faces rendered"
    )
    for line in failed:
        print(f"  not rendered: {line}")


def _timed(analyzer, image: np.ndarray) -> float:
    start = time.perf_counter()
    analyzer.detect_scored(image) if hasattr(analyzer, "detect_scored") else analyzer.detect(image)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
