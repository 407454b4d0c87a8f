"""Peak host memory of the sonic backend's node path against clip length (tiny random weights, CPU).

Each clip runs in a fresh process: SONIC_Inference (the sonic backend with a tiny random
checkpoint, as the tests make them) -> Lip-Sync Correct (auto: it measures sonic frames) -> Video
Encode, exactly as the templates chain them, frames streamed as SONIC_FRAMES (a uint8 frame store
in the temp folder). Prints the peak resident memory (ru_maxrss) of each process next to the size
one float32 IMAGE of the clip would have had (what each node held, per copy, before frames
streamed). The compute is a toy; what matters is that the peak does not grow with the clip.

Frames are 128x128 by default: 10 s and 60 s take about two minutes together on the 2-core
machine (2 denoising steps; the toy UNet costs ~1.5 s per second of clip at 128, ~5 s at 256),
and a float32 IMAGE of the 60 s clip would still be 281 MB per copy, so a clip-length-bound
buffer anywhere on the path would show. `--size 256` takes ~6 minutes for both.

Run: .venv/bin/python benchmarks/bench_sonic_memory.py [--durations 10 60] [--size 128] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(seconds: float, size: int, folder: Path) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    import conftest  # noqa: F401  (the pack importable from a checkout)
    from comfyui_sonic.nodes import comfy_bridge
    from comfyui_sonic.nodes.engine.backend import SonicModel
    from comfyui_sonic.nodes.engine.sonic import SonicLoadOptions, load_sonic_backend, write_random_checkpoint
    from comfyui_sonic.nodes.engine.sonic.random_checkpoint import random_prepared_data
    from comfyui_sonic.nodes.inference import SONIC_Inference
    from comfyui_sonic.nodes.lipsync_correct import LipSyncCorrect
    from comfyui_sonic.nodes.video_encode import VideoEncode

    files = write_random_checkpoint(folder / "weights", "tiny", seed=0)
    options = SonicLoadOptions(
        model_dir=files["model_dir"],
        svd=files["svd"],
        dtype="fp32",
        device="cpu",
        enable_rife=False,
        config="tiny",
    )
    model = SonicModel(backend=load_sonic_backend(options))
    comfy_bridge.set_output_dir(folder / "out")
    data = random_prepared_data(seconds, size, seed=0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    frames, _, fps = SONIC_Inference().generate(
        model=model, data=data, seed=0, inference_steps=2, dynamic_scale=1.0, motion_scale=1.0, fps=25.0
    )
    synced = LipSyncCorrect().correct(frames=frames, fps=fps, mode="auto")["result"][0]
    path = VideoEncode().encode(frames=synced, fps=fps, preset="ultrafast")["result"][1]
    return {
        "seconds": seconds,
        "frames": len(frames),
        "size": f"{frames.info.width}x{frames.info.height}",
        "wall": time.perf_counter() - t0,
        "before_mb": base,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "image_mb": len(frames) * frames.info.width * frames.info.height * 3 * 4 / 2**20,
        "mp4_mb": Path(path).stat().st_size / 1e6,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(child(float(sys.argv[2]), int(sys.argv[3]), Path(tmp))))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels (default 128)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="processes per clip length: the peak of one varies by tens of MB (allocator, threads)",
    )
    args = parser.parse_args()
    print(
        f"sonic node path, tiny random weights on the CPU (cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f})"
    )
    rows = []
    for seconds in [d for d in args.durations for _ in range(max(1, args.repeat))]:
        cmd = [sys.executable, __file__, "--child", str(seconds), str(args.size)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=7200)
        if done.returncode != 0:
            raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"{r['seconds']:>5.0f} s, {r['frames']} frames {r['size']}: peak {r['peak_mb']:6.0f} MB "
            f"(after model load {r['before_mb']:.0f} MB); one float32 IMAGE of this clip: {r['image_mb']:6.0f} MB; "
            f"{r['wall']:.1f} s"
        )
    if len(args.durations) > 1:
        short = [r for r in rows if r["seconds"] == args.durations[0]]
        long = [r for r in rows if r["seconds"] == args.durations[-1]]
        growth = min(r["peak_mb"] for r in long) - min(r["peak_mb"] for r in short)
        image_growth = long[0]["image_mb"] - short[0]["image_mb"]
        print(
            f"peak grew {growth:+.0f} MB from the shortest to the longest clip (lowest peak of each; "
            f"one IMAGE copy grows {image_growth:.0f} MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
