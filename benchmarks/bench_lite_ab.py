"""Lite speed of this working tree against a git revision, measured in one run (A/B).

On a shared machine absolute timings drift with the other work, so a "before/after"
taken minutes apart says little. This runs bench_lite.py's clip (10 s of speech,
single thread: render then encode each chunk) for the revision and for the working
tree in alternation, each in a fresh child process, and prints the median of each
and their ratio: the render time (animate, where the lite mouth is drawn), the CPU
seconds of the whole clip and the wall time.

Run: .venv/bin/python benchmarks/bench_lite_ab.py [--against main] [--rounds 3] [--resolution 512]
"""

from __future__ import annotations

import argparse
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
            for side, path in (
                (("before", base), ("after", None)) if i % 2 == 0 else (("after", None), ("before", base))
            ):
                r = run(path, args.resolution)
                results[side].append(r)
                print(
                    f"  {side:>6}: animate {r['animate']:.2f} s, cpu {r['cpu']:.2f} s, total {r['total']:.2f} s"
                )
    print(f"medians of {args.rounds} (after / before):")
    for key in ("animate", "cpu", "total"):
        before = statistics.median(r[key] for r in results["before"])
        after = statistics.median(r[key] for r in results["after"])
        print(f"  {key:>8}: before {before:.2f} s, after {after:.2f} s, ratio {after / before:.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
