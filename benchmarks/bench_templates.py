"""What users run: the shipped lite templates, whole process, next to the engine-only path.

Each case runs `sonic-runner run workflows/api/<template>` in a fresh process (interpreter start,
imports, model loads, LoadImage, Prepare, Animate, Lip Sync, Save MP4, exit) and prints its wall
time, real-time factor, CPU seconds (user + system, all threads: steadier than wall time on a
shared machine) and peak resident memory (ru_maxrss of that process, from wait4). `--embedded`
also runs the same graph through the embedded executor called from Python (no CLI). Next to each
template line, benchmarks/bench_lite.py's engine-only path renders the same clip with the
template's encoder settings in a fresh process; the ratio template / engine is printed for wall
and CPU time. "start -> Save MP4" is process start to the moment the encoder node starts: the
first frame is rendered right after it (the lite frames are made while they are encoded); for
the engine path it is process start to its first frame (start-up, model load, load, prepare).

Cases (targets from issue 16 in brackets):
  balanced 10 s at 512, balanced 60 s at 512 [>= 5x real time, peak <= 1.5 GB],
  hq 10 s at 768, hq 60 s at 768 [peak <= 2 GB]; template / engine [<= 1.3].
  --long: hq at 1024 for 10 minutes [completes, peak <= 3 GB] (takes minutes).

Inputs: ../shared/assets/{portrait.jpg,speech_10s.wav} when present, else demo/; the speech is
looped to the clip length.

`--repeat N` runs each case N times, template and engine alternating (so a burst of other work
on a shared machine hits both), and prints the run with the median wall time of each.

Run: .venv/bin/python benchmarks/bench_templates.py [--long] [--embedded] [--only balanced] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_lite  # noqa: E402  (same folder: the engine-only path and its inputs)

RUNNER = [sys.executable, "-m", "runner"]
CASES = [  # (template tier, seconds, min_resolution, target text)
    ("balanced", 10.0, 512, ""),
    ("balanced", 60.0, 512, "[>= 5x real time, peak <= 1500 MB]"),
    ("hq", 10.0, 768, ""),
    ("hq", 60.0, 768, "[peak <= 2000 MB]"),
]
LONG = ("hq", 600.0, 1024, "[completes, peak <= 3000 MB]")


def looped_speech(seconds: float, folder: Path) -> Path:
    """The benchmark speech looped to `seconds`, as a 16-bit WAV."""
    sys.path.insert(0, str(REPO / "tests"))
    import conftest  # noqa: F401  (the pack importable from a checkout)
    from comfyui_sonic.nodes.engine.audio_input import load_audio

    speech = load_audio(bench_lite.inputs()[1])
    mono = speech.samples.mean(axis=0)
    n = round(seconds * speech.sample_rate)
    looped = np.tile(mono, int(np.ceil(n / len(mono))))[:n]
    path = folder / f"speech_{seconds:g}s.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(speech.sample_rate)
        out.writeframes((np.clip(looped, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def template_values(tier: str) -> dict:
    prompt = json.loads((REPO / "workflows" / "api" / f"sonic_lite_{tier}_api.json").read_text())
    save = next(n for n in prompt.values() if n["class_type"] == "VideoEncode")["inputs"]
    return {"preset": save["preset"], "crf": save["crf"]}


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Run `cmd`; wall time, CPU time and peak RSS of that process, and when each output line came."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines = []
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip()))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(text for _, text in lines[-20:])
        raise SystemExit(f"benchmark run failed ({' '.join(cmd)}):\n{tail}")
    encode_start = next((t for t, text in lines if "Save MP4" in text), float("nan"))
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024.0,
        "to_encode": encode_start,
        "lines": [text for _, text in lines],
    }


EMBEDDED = """
import sys, json
from pathlib import Path
from comfyui_sonic.runner.embedded import run_embedded
prompt = json.loads(Path(sys.argv[1]).read_text())
for node in prompt.values():
    if node["class_type"] == "LoadImage": node["inputs"]["image"] = sys.argv[2]
    if node["class_type"] == "LoadAudio": node["inputs"]["audio"] = sys.argv[3]
    if node["class_type"] == "SONIC_PreData": node["inputs"]["min_resolution"] = int(sys.argv[5])
def sink(event):
    if event.get("event") == "node": print("running", event.get("title"), flush=True)
print(run_embedded(prompt, Path(sys.argv[4]), sink))
"""


def template_run(tier: str, audio: Path, resolution: int, out: Path, embedded: bool) -> dict:
    workflow = REPO / "workflows" / "api" / f"sonic_lite_{tier}_api.json"
    image = bench_lite.inputs()[0]
    if embedded:
        cmd = [
            sys.executable,
            "-c",
            EMBEDDED,
            str(workflow),
            str(image),
            str(audio),
            str(out),
            str(resolution),
        ]
    else:
        cmd = [*RUNNER, "run", str(workflow), "--image", str(image), "--audio", str(audio), "-o", str(out)]
        cmd += ["--set", f"Prepare.min_resolution={resolution}"]
    return timed(cmd, REPO)


def engine_run(seconds: float, resolution: int, preset: str) -> dict:
    """benchmarks/bench_lite.py's engine-only path for the same clip, timed as a whole process too."""
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_lite.py"),
        "--child",
        str(seconds),
        str(resolution),
    ]
    r = timed([*cmd, preset, "1"], REPO)
    inside = json.loads(r["lines"][-1])
    # start -> first frame: interpreter, imports, model load, load and prepare the inputs
    r["to_encode"] = r["wall"] - inside["total"] + inside["load"] + inside["prepare"]
    return r


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: r["wall"])
    return ordered[(len(ordered) - 1) // 2]


def line(label: str, seconds: float, r: dict) -> str:
    return (
        f"{label:<28} total {r['wall']:7.2f} s = {seconds / r['wall']:5.1f}x real time, cpu {r['cpu']:7.2f} s, "
        f"peak {r['peak_mb']:6.0f} MB, start -> Save MP4 {r['to_encode']:5.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="shipped templates, whole process, vs the engine path")
    parser.add_argument("--long", action="store_true", help="also 10 minutes at 1024 (hq template)")
    parser.add_argument("--embedded", action="store_true", help="also through run_embedded() from Python")
    parser.add_argument("--only", choices=["balanced", "hq"], help="only this template")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine-only comparison")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per case, alternating; the median-wall run is printed"
    )
    args = parser.parse_args()
    cases = [c for c in CASES + ([LONG] if args.long else []) if args.only in (None, c[0])]
    print(
        f"lite templates, whole process (cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, "
        f"median of {max(1, args.repeat)})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for tier, seconds, resolution, target in cases:
            audio = looped_speech(seconds, folder)
            settings = template_values(tier)
            head = f"sonic_lite_{tier} {seconds:>4.0f} s at {resolution}"
            runs: dict[str, list[dict]] = {"runner": [], "embedded": [], "engine": []}
            for _ in range(max(1, args.repeat)):
                runs["runner"].append(template_run(tier, audio, resolution, folder / "out", embedded=False))
                if args.embedded:
                    runs["embedded"].append(
                        template_run(tier, audio, resolution, folder / "out", embedded=True)
                    )
                if not args.no_engine:
                    runs["engine"].append(engine_run(seconds, resolution, settings["preset"]))
            r = median_run(runs["runner"])
            print(line(f"{head} runner", seconds, r), target)
            if args.embedded:
                print(line(f"{head} embedded", seconds, median_run(runs["embedded"])))
            if not args.no_engine:
                eng = median_run(runs["engine"])
                print(line("  engine-only (bench_lite)", seconds, eng), f"(preset {settings['preset']})")
                print(
                    f"{'  template / engine':<28} wall {r['wall'] / eng['wall']:.2f}x, "
                    f"cpu {r['cpu'] / eng['cpu']:.2f}x  [<= 1.3]"
                )
            for mp4 in (folder / "out").rglob("*.mp4"):
                mp4.unlink()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
