"""Video Encode next to the ffmpeg command line: the same frames, the same settings, one run.

The frames (a lite render of the benchmark portrait, looped speech) are written once as raw
rgb24 in a frame store. Then, alternating, each round:
  ours:   the frame store -> engine.encode.encode_source (what Video Encode runs): reads and
          converts RGB -> BT.709 yuv420p on a worker thread, x264 on the calling thread
  ffmpeg: ffmpeg -f rawvideo -pix_fmt rgb24 -i frames.rgb -i speech.wav
          -vf scale=out_color_matrix=bt709:out_range=tv -pix_fmt yuv420p
          -c:v libx264 -preset P -crf C -c:a aac -b:a 192k -movflags +faststart
Both write H.264 yuv420p BT.709 + AAC 192 kb/s MP4s with default x264 threading. Prints the
median wall and CPU time of each and the ratio ffmpeg / ours (target >= 0.9: ours at most ~11%
slower). Needs the `ffmpeg` program (Debian: apt-get install ffmpeg).

Run: .venv/bin/python benchmarks/bench_encode.py [--seconds 10] [--resolution 512] [--preset veryfast] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
import bench_lite  # noqa: E402
import bench_templates  # noqa: E402
import conftest  # noqa: E402, F401  (the pack importable from a checkout)


def render_store(seconds: float, resolution: int, root: Path):
    from comfyui_sonic.nodes.engine.audio_input import load_audio
    from comfyui_sonic.nodes.engine.frames import ClipInfo, FrameStoreWriter
    from comfyui_sonic.nodes.engine.image_input import load_image
    from comfyui_sonic.nodes.engine.lite.backend import LiteBackend
    from comfyui_sonic.nodes.engine.prepare import prepare
    from comfyui_sonic.nodes.engine.progress import NullProgress
    from comfyui_sonic.nodes.engine.types import GenerationParams

    wav = bench_templates.looped_speech(seconds, root)
    data = prepare(load_image(bench_lite.inputs()[0]), load_audio(wav), min_resolution=resolution)
    params = GenerationParams(fps=25.0)
    n = data.frame_count(25.0)
    w, h = data.size
    with FrameStoreWriter(w, h, n, root=root) as writer:
        for chunk in LiteBackend().generate(data, params, NullProgress()):
            writer.write(chunk)
        store = writer.finish(ClipInfo(w, h, n, 25.0, audio=data.audio))
    return store, wav


def cpu_self() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def ours(store, out: Path, preset: str, crf: int) -> tuple[float, float]:
    from comfyui_sonic.nodes.engine.encode import VideoWriter, encode_source

    c0, t0 = cpu_self(), time.perf_counter()
    info = store.info
    with VideoWriter(out, info.width, info.height, info.fps, crf=crf, preset=preset, audio=info.audio) as w:
        encode_source(store, w)
    return time.perf_counter() - t0, cpu_self() - c0


def ffmpeg(store, wav: Path, out: Path, preset: str, crf: int) -> tuple[float, float]:
    info = store.info
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{info.width}x{info.height}", "-r", f"{info.fps:g}", "-i", str(store.path), "-i", str(wav)]
    cmd += ["-vf", "scale=out_color_matrix=bt709:out_range=tv", "-pix_fmt", "yuv420p"]
    cmd += ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
    cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]
    cmd += ["-c:a", "aac", "-b:a", "192k", "-shortest", "-movflags", "+faststart", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ffmpeg failed: {' '.join(cmd)}")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description="Video Encode vs the ffmpeg CLI on the same frames")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--preset", default="veryfast", help="x264 preset (the balanced lite template's)")
    parser.add_argument("--crf", type=int, default=19)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("bench_encode: the ffmpeg program is not installed (Debian: apt-get install ffmpeg)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, wav = render_store(args.seconds, args.resolution, root)
        info = store.info
        print(
            f"encode {info.count} frames {info.width}x{info.height}, x264 {args.preset} crf {args.crf} + AAC "
            f"(cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f})"
        )
        mine, theirs = [], []
        for i in range(args.rounds):
            mine.append(ours(store, root / f"ours{i}.mp4", args.preset, args.crf))
            theirs.append(ffmpeg(store, wav, root / f"ffmpeg{i}.mp4", args.preset, args.crf))
        ow, oc = statistics.median(t for t, _ in mine), statistics.median(c for _, c in mine)
        fw, fc = statistics.median(t for t, _ in theirs), statistics.median(c for _, c in theirs)
        size_o, size_f = (root / "ours0.mp4").stat().st_size, (root / "ffmpeg0.mp4").stat().st_size
        print(f"ours (Video Encode path): {ow:6.2f} s wall, {oc:6.2f} s cpu, {size_o / 1e6:5.2f} MB")
        print(f"ffmpeg command line:      {fw:6.2f} s wall, {fc:6.2f} s cpu, {size_f / 1e6:5.2f} MB")
        print(f"speed ratio ffmpeg / ours: wall {fw / ow:.2f}, cpu {fc / oc:.2f}  [target >= 0.9]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
