"""End-to-end speed and memory of the lite backend: portrait + speech -> MP4 on the CPU.

Prints measured numbers (targets from issue 3 in brackets):
  1. 10 s clip at 25 fps, min_resolution 512: real-time factor   [>= 5x, <= 2 s]
  2. the same at 1024                                             [>= 2x]
  3. peak memory of a 60 s clip at 512                            [< 1.5 GB]
  4. with --long: a 10-minute clip at 512 completes (time, memory)
Each line has the stage breakdown (load, prepare, animate, encode), the CPU
seconds the clip used (user + system, all threads: less sensitive than wall time
to other work on a shared machine) and the peak resident memory (ru_maxrss) of a
fresh child process that ran only that clip. The one-time load of the face
detector prepare() uses (ComfyUI keeps it between prompts) is timed apart.

Frames stream: each chunk of 16 frames is encoded as soon as it is rendered and
then dropped. `--pipeline` (default) renders the next chunk on a second thread
while the encoder works on the last one; `--no-pipeline` alternates on one.

Encoder: libx264 `--preset`, default ultrafast at crf 19. On this 2-core machine
the encoder (RGB->YUV conversion + x264) costs as much CPU as the animation, and
ultrafast is what brings 1024 under 2x real time; its files are ~5x larger than
veryfast's at the same crf (10 s at 512: ~3.9 MB vs ~0.7 MB). `--presets` prints
ultrafast/superfast/veryfast/faster side by side. Inputs: ../shared/assets/{portrait.jpg,speech_10s.wav} when
present, else the bundled demo/; longer clips loop the speech.

Run: .venv/bin/python benchmarks/bench_lite.py [--long] [--presets] [--no-pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "assets"
CHUNK = 16


def inputs() -> tuple[Path, Path]:
    image, audio = SHARED / "portrait.jpg", SHARED / "speech_10s.wav"
    if image.is_file() and audio.is_file():
        return image, audio
    return REPO / "demo" / "sonic_example_face.jpg", REPO / "demo" / "sonic_example_speech.wav"


def run_clip(seconds: float, resolution: int, preset: str, pipeline: bool) -> dict:
    """One clip, end to end, in this process; returns timings (s) and peak memory (MB)."""
    import numpy as np
    from comfyui_sonic.nodes.engine.audio_input import load_audio
    from comfyui_sonic.nodes.engine.encode import VideoWriter
    from comfyui_sonic.nodes.engine.image_input import load_image
    from comfyui_sonic.nodes.engine.lite.backend import LiteBackend
    from comfyui_sonic.nodes.engine.prepare import DEFAULT_DETECTOR, _analyzer_for, prepare
    from comfyui_sonic.nodes.engine.progress import NullProgress
    from comfyui_sonic.nodes.engine.types import Audio, GenerationParams

    image_path, audio_path = inputs()
    m0 = time.perf_counter()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    # the detector prepare() uses, loaded once per process (ComfyUI keeps it between prompts): timed
    # on its own. (dlib's, loaded here before, is not used by prepare's default detector or by lite.)
    _analyzer_for(DEFAULT_DETECTOR, None)
    t0 = time.perf_counter()
    image = load_image(image_path)
    speech = load_audio(audio_path)
    if speech.duration < seconds:  # loop the speech for the long clips
        reps = int(np.ceil(seconds / speech.duration))
        speech = Audio(samples=np.tile(speech.samples, (1, reps)), sample_rate=speech.sample_rate)
    speech = Audio(
        samples=speech.samples[:, : round(seconds * speech.sample_rate)], sample_rate=speech.sample_rate
    )
    t1 = time.perf_counter()
    data = prepare(image, speech, min_resolution=resolution)
    t2 = time.perf_counter()

    params = GenerationParams(seed=0, fps=25.0)
    backend = LiteBackend(chunk_frames=CHUNK)
    chunks = backend.generate(data, params, NullProgress())
    animate = encode = 0.0
    frames = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        w, h = data.size
        with VideoWriter(path, w, h, params.fps, crf=19, preset=preset, audio=data.audio) as writer:
            if pipeline:
                animate, encode, frames = _pipelined(chunks, writer)
            else:
                while True:
                    a = time.perf_counter()
                    chunk = next(chunks, None)
                    b = time.perf_counter()
                    animate += b - a
                    if chunk is None:
                        break
                    writer.write(chunk)
                    encode += time.perf_counter() - b
                    frames += len(chunk)
            c = time.perf_counter()
        encode += time.perf_counter() - c  # flushing the encoder
        size = path.stat().st_size
    t3 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    return {
        "seconds": seconds,
        "resolution": f"{w}x{h}",
        "frames": frames,
        "preset": preset,
        "pipeline": pipeline,
        "models": t0 - m0,
        "load": t1 - t0,
        "prepare": t2 - t1,
        "animate": animate,
        "encode": encode,
        "total": t3 - t0,
        "cpu": cpu,
        "mb_file": size / 1e6,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _pipelined(chunks, writer) -> tuple[float, float, int]:
    """Render on a worker thread (cv2/numpy release the GIL) while this thread encodes."""
    q: queue.Queue = queue.Queue(maxsize=2)
    busy = {"animate": 0.0}
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            while True:
                a = time.perf_counter()
                chunk = next(chunks, None)
                busy["animate"] += time.perf_counter() - a
                q.put(chunk)
                if chunk is None:
                    return
        except BaseException as exc:  # handed to the consumer
            failure.append(exc)
            q.put(None)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    encode, frames = 0.0, 0
    while (chunk := q.get()) is not None:
        a = time.perf_counter()
        writer.write(chunk)
        encode += time.perf_counter() - a
        frames += len(chunk)
    worker.join()
    if failure:
        raise failure[0]
    return busy["animate"], encode, frames


def child(seconds: float, resolution: int, preset: str, pipeline: bool) -> dict:
    """Run one clip in a fresh interpreter so its peak memory is its own."""
    cmd = [sys.executable, __file__, "--child", str(seconds), str(resolution), preset, str(int(pipeline))]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def line(r: dict, target: str = "") -> str:
    rtf = r["seconds"] / r["total"]
    return (
        f"{r['seconds']:>5.0f} s {r['resolution']:>9} {r['preset']:>9}: total {r['total']:6.2f} s = {rtf:5.1f}x real time"
        f"  [load {r['load']:.2f}, prepare {r['prepare']:.2f}, animate {r['animate']:.2f}, encode {r['encode']:.2f}]"
        f"  cpu {r['cpu']:.2f} s, peak {r['peak_mb']:.0f} MB, file {r['mb_file']:.1f} MB {target}"
        f"  (+{r['models']:.2f} s one-time face detector load)"
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        seconds, resolution, preset, pipeline = sys.argv[2:6]
        print(json.dumps(run_clip(float(seconds), int(resolution), preset, bool(int(pipeline)))))
        return 0
    parser = argparse.ArgumentParser(description="lite backend end-to-end benchmark")
    parser.add_argument("--preset", default="ultrafast", help="x264 preset for all runs (ultrafast)")
    parser.add_argument(
        "--presets", action="store_true", help="also time ultrafast/superfast/veryfast at 512 and 1024"
    )
    parser.add_argument("--long", action="store_true", help="also render a 10-minute clip at 512")
    parser.add_argument(
        "--no-pipeline", dest="pipeline", action="store_false", help="render and encode on one thread"
    )
    args = parser.parse_args()

    print(
        f"lite backend benchmark  (cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; inputs {inputs()[0].name})"
    )
    print(
        f"streaming chunks of {CHUNK} frames, x264 crf 19, {'pipelined' if args.pipeline else 'one thread'}"
    )
    r512 = child(10.0, 512, args.preset, args.pipeline)
    print(line(r512, "[target >= 5x]"))
    r1024 = child(10.0, 1024, args.preset, args.pipeline)
    print(line(r1024, "[target >= 2x]"))
    r60 = child(60.0, 512, args.preset, args.pipeline)
    print(line(r60, "[target peak < 1500 MB]"))
    if args.presets:
        for res in (512, 1024):
            for preset in ("ultrafast", "superfast", "veryfast", "faster"):
                print(line(child(10.0, res, preset, args.pipeline)))
    if args.long:
        print(line(child(600.0, 512, args.preset, args.pipeline), "[10-minute clip completes]"))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
