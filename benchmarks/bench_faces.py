"""Face detection on the measured set (tests/faceset.py): recall, false positives and time per detector.

Prints one table: a row per image class, for each detector "found/total" on face classes (the
face counts only when a box that SONIC_PreData keeps contains its centre) and "refused/total" on
non-face classes, then recall on photos and on the stylised set, false positives, the mean
time per image and the time for one 2000 x 3000 photo (the issue's target: < 0.3 s) and for a
2000 x 3000 image with no face (the whole tile pyramid runs: the worst case).
A last block checks landmarks on every face the detector found: the share whose 68 points have
a face's layout (eyes above nose above mouth; see prepare._face_layout).

`--render` then runs every stylised face through the shipped lite template the way users do,
`sonic-runner run workflows/api/sonic_lite_fast_api.json --image FACE --audio SPEECH -o DIR` (the
runner's own entry point, in this process, so the detector loads once; 1 s of speech; the
template's default detector), and prints rendered/total, the time per face and each failure in
one line. A render counts when the MP4 has a frame per 1/25 s of speech, the face crop that
SONIC_PreData reported contains the face centre, the first frame is that crop and the face is
what moves (tests/faceset.render). The fast template: the lite backend ignores inference_steps,
so the tiers differ only in the encoder, and fast's is the cheapest.

Detectors: dlib (HOG), blazeface (MediaPipe BlazeFace TFLite), and yoloface (the official
yoloface_v5m.pt) when that file is in $SONIC_MODELS_DIR. Times are wall clock on whatever else
the machine runs; compare detectors within one run.

Run: .venv/bin/python benchmarks/bench_faces.py [--lfw N] [--threshold T] [--detectors dlib,blazeface]
     [--misses] [--render [--template workflows/api/sonic_lite_balanced_api.json]]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import tests.conftest  # noqa: E402, F401  (the pack importable as comfyui_sonic from a checkout)

# isort: split
# One copy of the pack, the one sonic-runner imports: the detector loads once for the table and the renders.
from comfyui_sonic.nodes.engine.prepare import _analyzer_for, _face_layout, plausible_faces  # noqa: E402

from tests.faceset import (  # noqa: E402
    LITE_FAST,
    Sample,
    detection_set,
    hit,
    landscape,
    portraits,
    render,
    speech_clip,
)


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
        help="also render every stylised face through the shipped lite template (sonic-runner run)",
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=LITE_FAST,
        help=f"the template --render runs (default {LITE_FAST.relative_to(ROOT)})",
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
        _render_stylised([s for s in samples if s.stylised and s.face is not None], args.template.resolve())


def _render_stylised(samples: list[Sample], template: Path) -> None:
    """Each stylised face through a shipped template as `sonic-runner run` runs it (tests/faceset.render)."""
    from comfyui_sonic.nodes.engine.prepare import DEFAULT_DETECTOR

    with tempfile.TemporaryDirectory(prefix="bench-faces-") as tmp:
        folder = Path(tmp)
        speech = speech_clip(folder / "speech.wav", seconds=1.0)
        renders = [render(s, speech, folder, template) for s in samples]
    done = [r for r in renders if r.problem is None]
    seconds = [r.seconds for r in renders]
    print(
        f"\nsonic-runner run {template.relative_to(ROOT)} (in-process; detector {DEFAULT_DETECTOR}, "
        f"1 s of speech): {len(done)}/{len(renders)} stylised faces rendered"
    )
    print(
        f"s per face (load, Prepare, Animate, Lip Sync, Save MP4): mean {np.mean(seconds):.2f}, "
        f"median {np.median(seconds):.2f}, max {max(seconds):.2f} ({max(renders, key=lambda r: r.seconds).sample.name})"
    )
    for r in renders:
        if r.problem is not None:
            print(f"  not rendered: {r.sample.name}: {r.problem}")


def _timed(analyzer, image: np.ndarray) -> float:
    start = time.perf_counter()
    analyzer.detect_scored(image) if hasattr(analyzer, "detect_scored") else analyzer.detect(image)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
