"""Runner bookkeeping benchmarks against in-process fake ComfyUI hosts with ~0 ms jobs.

Prints measured numbers (targets from issue 5 in brackets):
  1. runner overhead per job beyond the host's own time            [<= 20 ms]
  2. bookkeeping throughput with 8 fast hosts                       [>= 50 jobs/s]
  3. resident memory of a runner with a 10,000-job manifest         [<= 200 MB]
  4. `--resume` of a half-done 10,000-job journal to first dispatch [< 2 s]
  5. `sonic-runner --help` wall time                                [< 0.5 s]

Run: .venv/bin/python benchmarks/bench_runner.py [--quick]
The fake hosts run in this process (threads); the 10,000-job runner is a child process
(`python -m comfyui_sonic.runner batch ...`) so its memory and start-up are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fake_comfy import FakeComfy  # noqa: E402
from tests.fake_comfy.jobs import write_job_files  # noqa: E402


def write_manifest(path: Path, rows: int) -> Path:
    with path.open("w") as f:
        f.write("id,image,audio,seed\n")
        for i in range(rows):
            f.write(f"clip{i:05d},face.png,speech.wav,{i}\n")
    return path


def run_batch(
    workflow: Path, manifest: Path, out: Path, urls: list[str], inflight: int
) -> tuple[float, list]:
    from comfyui_sonic.runner.batch import Batch, BatchConfig
    from comfyui_sonic.runner.secrets import HostSpec

    events: list[tuple[float, dict]] = []
    config = BatchConfig(
        workflow_path=workflow,
        out_dir=out,
        hosts=[HostSpec(url=u) for u in urls],
        manifest_path=manifest,
        inflight=inflight,
        poll_interval=0.5,
    )
    batch = Batch(config, sinks=[lambda e: events.append((time.perf_counter(), e))])
    batch.open()
    t0 = time.perf_counter()
    code = batch.run()
    wall = time.perf_counter() - t0
    states = {j.state for j in batch.jobs.values()}
    if code != 0 or states != {"done"}:
        raise SystemExit(f"benchmark batch failed: exit {code}, states {states}")
    batch.journal.close()
    return wall, events


def bench_overhead(tmp: Path, jobs: int) -> None:
    with FakeComfy(tmp / "host", run_seconds=0.0, send_previews=False) as host:
        workflow, _, _ = write_job_files(tmp / "in", host.url)
        manifest = write_manifest(tmp / "in" / "overhead.csv", jobs)
        wall, events = run_batch(workflow, manifest, tmp / "out_overhead", [host.url], inflight=1)
        host_ms = host_seconds(host.url) * 1000
    per_job = wall / jobs * 1000
    phases: dict[str, list[float]] = {"prepare+submit": [], "host+follow": [], "fetch+verify": []}
    seen: dict[tuple[str, str], float] = {}
    for ts, e in events:
        if e["event"] == "job":
            seen[(e["job_id"], e["state"])] = ts
    for i in range(jobs):
        j = f"clip{i:05d}"
        phases["prepare+submit"].append(seen[(j, "submitted")] - seen[(j, "uploading")])
        phases["host+follow"].append(seen[(j, "fetching")] - seen[(j, "submitted")])
        phases["fetch+verify"].append(seen[(j, "done")] - seen[(j, "fetching")])
    detail = ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in phases.items())
    print(
        f"1. runner overhead per job beyond the host's own time: {per_job - host_ms:.1f} ms"
        f"   [target <= 20 ms]  (1 host, sequential: {per_job:.1f} ms wall per job,"
        f" host execution {host_ms:.1f} ms from its history timestamps)"
    )
    print(f"   phase medians: {detail}")


def host_seconds(url: str) -> float:
    """Mean execution time per prompt as the host reports it (execution_start -> execution_success)."""
    import urllib.request

    with urllib.request.urlopen(url + "/history", timeout=10) as resp:
        history = json.load(resp)
    spans = []
    for entry in history.values():
        stamps = {m[0]: m[1].get("timestamp") for m in entry["status"]["messages"] if isinstance(m[1], dict)}
        if stamps.get("execution_start") and stamps.get("execution_success"):
            spans.append((stamps["execution_success"] - stamps["execution_start"]) / 1000)
    return statistics.mean(spans) if spans else 0.0


def bench_throughput(tmp: Path, jobs: int) -> None:
    hosts = [FakeComfy(tmp / f"h{i}", run_seconds=0.0, send_previews=False).start() for i in range(8)]
    try:
        workflow, _, _ = write_job_files(tmp / "in8", hosts[0].url)
        manifest = write_manifest(tmp / "in8" / "throughput.csv", jobs)
        wall, _ = run_batch(workflow, manifest, tmp / "out_tp", [h.url for h in hosts], inflight=2)
    finally:
        for h in hosts:
            h.stop()
    print(f"2. throughput, 8 hosts x 2 in flight, {jobs} jobs: {jobs / wall:.1f} jobs/s   [target >= 50]")


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def bench_10k(tmp: Path, rows: int, run_for: float) -> None:
    hosts = [FakeComfy(tmp / f"k{i}", run_seconds=0.0, send_previews=False).start() for i in range(8)]
    try:
        folder = tmp / "in10k"
        workflow, _, _ = write_job_files(folder, hosts[0].url)
        manifest = write_manifest(folder / "big.csv", rows)
        out = tmp / "out10k"
        argv = [sys.executable, "-m", "comfyui_sonic.runner", "batch", str(workflow), str(manifest)]
        argv += ["--out", str(out), "--quiet", "--poll-interval", "0.5"]
        for h in hosts:
            argv += ["--host", h.url]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak, t0 = 0.0, time.perf_counter()
        while time.perf_counter() - t0 < run_for and proc.poll() is None:
            try:
                peak = max(peak, rss_mb(proc.pid))
            except Exception:  # noqa: BLE001 - the process may be exiting
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        journal = out / "journal.sqlite"
        db = sqlite3.connect(journal)
        done_before = db.execute("SELECT COUNT(*) FROM jobs WHERE state='done'").fetchone()[0]
        print(
            f"3. resident memory, {rows}-job manifest, 8 hosts, {run_for:g} s of running: peak {peak:.0f} MB"
            f"   [target <= 200 MB]  ({done_before} jobs done when killed)"
        )
        # Half-done: mark the first half done (as a long run would have), keep the in-flight ones as the
        # kill left them, so --resume must also ask the hosts about those first.
        db.execute(
            "UPDATE jobs SET state='done', finished_at=? WHERE row <= ? AND state='queued'",
            (time.time(), rows // 2),
        )
        db.commit()
        counts = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        db.close()
        resume_argv = [a if a != "--quiet" else "--jsonl" for a in argv] + ["--resume"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            resume_argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        first = None
        for line in proc.stdout:  # the JSON-lines event stream: the first "uploading" is the first dispatch
            if '"state":"uploading"' in line.replace(" ", ""):
                first = time.perf_counter() - t0
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        shown = f"{first:.2f} s" if first is not None else "never"
        print(
            f"4. --resume of a half-done {rows}-job journal ({counts}) to first dispatch: {shown}"
            "   [target < 2 s] (process start, imports, journal load, host checks included)"
        )
    finally:
        for h in hosts:
            h.stop()


def bench_help() -> None:
    exe = Path(sys.executable).parent / "sonic-runner"
    argv = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "comfyui_sonic.runner", "--help"]
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
        times.append(time.perf_counter() - t0)
    print(
        f"5. `{' '.join(Path(a).name for a in argv)}` wall time: median {statistics.median(times):.3f} s"
        f" (min {min(times):.3f})   [target < 0.5 s]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_runner_"))
    try:
        bench_overhead(tmp, 20 if args.quick else 60)
        bench_throughput(tmp, 80 if args.quick else 400)
        bench_10k(tmp, 2000 if args.quick else 10_000, 4.0 if args.quick else 8.0)
        bench_help()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
