"""Run the fake ComfyUI as its own process: `python -m tests.fake_comfy --port 8188 --root DIR`.

Used by tests that kill the host with SIGKILL (see process.py). Faults can be set
at start (--faults JSON) or later with POST /_fake/faults; die_mid_job makes the
process exit with code 17 half-way through a job.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .server import FakeComfy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fake_comfy", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8188)
    ap.add_argument("--root", required=True, help="folder for input/, output/ and the executions probe")
    ap.add_argument("--run-seconds", type=float, default=0.05)
    ap.add_argument("--progress-steps", type=int, default=4)
    ap.add_argument("--history-lag", type=float, default=0.0)
    ap.add_argument("--output-key", default="auto", choices=["auto", "images", "gifs", "both"])
    ap.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN (proxy stand-in)")
    ap.add_argument("--upload-limit-bytes", type=int, default=100 * 1024 * 1024)
    ap.add_argument("--vram-total-gb", type=float, default=24.0)
    ap.add_argument("--vram-free-gb", type=float, default=20.0)
    ap.add_argument("--model-files", default=None, help="comma-separated SONIC_ModelLoader file choices")
    ap.add_argument("--faults", default="{}", help='JSON for Faults, e.g. {"oom_above": 512}')
    ap.add_argument(
        "--lax-prompt-id", action="store_true", help="accept non-UUID prompt ids (ComfyUI 0.3.6x)"
    )
    ap.add_argument(
        "--stand-in-nodes", action="store_true", help="fixed stand-in node schemas, not the pack's"
    )
    ap.add_argument(
        "--job-times",
        action="append",
        metavar="TIER=SPEC",
        help="per-tier job time per 10 s clip, e.g. '*=uniform:40:60' 'hq=lognormal:90:0.3+tail:0.02:3+oom:0.1' "
        "(runner/capacity/jobtimes.py); replaces --run-seconds",
    )
    ap.add_argument("--time-scale", type=float, default=1.0, help="multiply --job-times by this (e.g. 0.01)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the job-time draws")
    args = ap.parse_args(argv)
    clock = None
    if args.job_times:
        from .timing import JobClock

        clock = JobClock(args.job_times, scale=args.time_scale, seed=args.seed)

    server = FakeComfy(
        args.root,
        host=args.host,
        port=args.port,
        run_seconds=args.run_seconds,
        progress_steps=args.progress_steps,
        history_lag=args.history_lag,
        output_key=args.output_key,
        token=args.token,
        upload_limit_bytes=args.upload_limit_bytes,
        vram_total_gb=args.vram_total_gb,
        vram_free_gb=args.vram_free_gb,
        model_files=args.model_files.split(",") if args.model_files else None,
        strict_prompt_id=not args.lax_prompt_id,
        pack_nodes=not args.stand_in_nodes,
        die_mode="exit",
        faults=json.loads(args.faults),
        job_times=clock,
    )
    server.start()
    print(f"fake_comfy listening on {server.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
