"""Lite speed of this working tree against a git revision, measured in one run (A/B).

On a shared machine absolute timings drift with the other work, so a "before/after"
taken minutes apart says little. This alternates the two, each run in a fresh child
process, and prints the median of each side and their ratio:
- render: CPU seconds (all threads) of rendering every frame of a 10 s clip at 25 fps
  (no encoding): the lite animation alone, what a change to the mouth or the warp costs;
- bench_lite.py's clip (10 s of speech, single thread: render then encode each chunk):
  animate, CPU seconds of the whole clip, and wall time.

Run: .venv/bin/python benchmarks/bench_lite_ab.py [--against main] [--rounds 3] [--resolution 512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_lite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def checkout(ref: str, where: Path) -> Path:
    """`ref`'s files under where/src, importable as comfyui_sonic from `where`."""
    src = where / "src"
    src.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--against: git archive {ref} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    (where / "comfyui_sonic").symlink_to(src, target_is_directory=True)
    return where


RENDER = """
import json, resource, sys, numpy as np
sys.path.insert(0, {bench!r})
import bench_lite
from comfyui_sonic.nodes.engine.audio_input import load_audio
from comfyui_sonic.nodes.engine.image_input import load_image
from comfyui_sonic.nodes.engine.lite.backend import LiteBackend
from comfyui_sonic.nodes.engine.prepare import prepare
from comfyui_sonic.nodes.engine.progress import NullProgress
from comfyui_sonic.nodes.engine.types import Audio, GenerationParams
image_path, audio_path = bench_lite.inputs()
speech = load_audio(audio_path)
speech = Audio(samples=speech.samples[:, : 10 * speech.sample_rate], sample_rate=speech.sample_rate)
data = prepare(load_image(image_path), speech, min_resolution={resolution})
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
c0 = cpu()
frames = sum(len(c) for c in LiteBackend().generate(data, GenerationParams(seed=0, fps=25.0), NullProgress()))
print(json.dumps({{"render": cpu() - c0, "frames": frames}}))
"""


def render_cpu(path: str | None, resolution: int) -> float:
    """CPU seconds of rendering a 10 s clip (no encoding) in a child importing from `path`."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = path
    code = RENDER.format(bench=str(Path(__file__).resolve().parent), resolution=resolution)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"render child failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["render"])


def run(path: str | None, resolution: int) -> dict:
    """One clip in a child process importing comfyui_sonic from `path` (None: this tree)."""
    env = os.environ.pop("PYTHONPATH", None)
    try:
        if path:
            os.environ["PYTHONPATH"] = path
        return bench_lite.child(10.0, resolution, "ultrafast", False)
    finally:
        os.environ.pop("PYTHONPATH", None)
        if env is not None:
            os.environ["PYTHONPATH"] = env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="main", help="git revision to compare with (main)")
    parser.add_argument("--rounds", type=int, default=3, help="clips per side, alternating (3)")
    parser.add_argument("--resolution", type=int, default=512, help="min_resolution (512)")
    args = parser.parse_args()
    print(f"lite A/B: working tree vs {args.against}, 10 s clip at {args.resolution}, one thread")
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (other work inflates all numbers)")
    with tempfile.TemporaryDirectory() as tmp:
        base = str(checkout(args.against, Path(tmp)))
        results: dict[str, list[dict]] = {"before": [], "after": []}
        for i in range(max(1, args.rounds)):
            order = (("before", base), ("after", None))
            for side, path in order if i % 2 == 0 else order[::-1]:
                r = run(path, args.resolution)
                r["render"] = render_cpu(path, args.resolution)
                results[side].append(r)
                print(
                    f"  {side:>6}: render cpu {r['render']:.2f} s; clip: animate {r['animate']:.2f} s,"
                    f" cpu {r['cpu']:.2f} s, total {r['total']:.2f} s"
                )
    print(f"medians of {args.rounds} (after / before):")
    for key in ("render", "animate", "cpu", "total"):
        before = statistics.median(r[key] for r in results["before"])
        after = statistics.median(r[key] for r in results["after"])
        print(f"  {key:>8}: before {before:.2f} s, after {after:.2f} s, ratio {after / before:.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
