"""The whole service on this machine at small scale, under a stepped load: ``python -m benchmarks.load.stack``.

    python -m benchmarks.load.stack run  --steps 5:60,10:60,20:60 --pace 1    # ramp -> results/<time>/report.md
    python -m benchmarks.load.stack run  --fleet --hosts 4 --fault kill-worker@60 --fault restart-broker@90
    python -m benchmarks.load.stack soak --users 10 --pace 1 --minutes 30     # fails on a leak
    python -m benchmarks.load.stack smoke                                      # CI: 60 s ramp + a fault
    python -m benchmarks.load.stack target --url https://sonic.example.com --api-key KEY --steps ...
    python -m benchmarks.load.report --compare results/OLD results/NEW

What runs (each a real server on loopback, in the run's folder, stopped at the end): PostgreSQL
(job store), SeaweedFS's S3 gateway (inputs and outputs), two ``sonic-runner serve`` replicas
behind Debian's nginx (deploy/nginx/sonic-runner.conf: least_conn, max_fails/fail_timeout,
limit_req), and Locust (benchmarks/load/locustfile.py) as the clients. Without ``--fleet`` each
replica renders with its in-process worker (the embedded default, lite backend on this CPU).
With ``--fleet`` the replicas publish to RabbitMQ instead, and ``sonic-runner worker`` processes
(one per fake ComfyUI host, tests/fake_comfy/, job times from ``--job-times`` scaled by
``--time-scale``) render; that is the deployment of DESIGN.md section 9.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
import wave
from pathlib import Path

from .components import (
    ROOT,
    Proc,
    StackError,
    own_children,
    popen_pids,
    postgres_pids,
    runner_argv,
    start_service,
    stop_children_since,
)
from .faults import FLEET_ONLY, Fault, FaultError, FaultRunner, parse_fault
from .nginx import Nginx
from .steps import StepError, parse_steps

BUCKET = "sonic-load"
DEFAULT_JOB_TIMES = ["*=uniform:40:60"]
#: What a fake host's SONIC_ModelLoader offers: the shipped templates' "(auto)" / "(models/sonic)"
#: choices and weight files, so workers treat it as a host with the Sonic weights.
FAKE_MODEL_FILES = (
    "(auto),(models/sonic),svd_xt.safetensors,unet.pth"  # the seeds' A100 seconds per 10 s clip
)


def _free_port() -> int:
    from tests.services._common import free_port

    return free_port()


class Stack:
    """Starts, exposes and stops every component; ``inject`` applies a fault."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out, self.args = out, args
        self.fleet = bool(args.fleet)
        self.postgres = self.s3 = self.rabbit = self.nginx = None
        self.replicas: list[Proc] = []
        self.workers: list[Proc] = []
        self.hosts: list[Proc] = []
        self.extra: list[Proc] = []  # locust
        self.api_key: str | None = None
        self._timers: list[threading.Thread] = []
        self._next = {"worker": 0, "replica": 0, "host": 0}

    # ------------------------------------------------------------------ start / stop
    def start(self) -> Stack:
        from tests.services.postgres import start_postgres
        from tests.services.seaweedfs import ACCESS_KEY, SECRET_KEY, start_seaweedfs

        t0 = time.monotonic()
        self.postgres = start_service(start_postgres, "PostgreSQL")
        self.s3 = start_service(start_seaweedfs, "SeaweedFS (S3)")
        self.s3.client().create_bucket(Bucket=BUCKET)
        self.env = {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        if self.fleet:
            from tests.services.rabbitmq import start_rabbitmq

            self.rabbit = start_service(start_rabbitmq, "RabbitMQ")
        self.api_key = self._create_key()
        if self.fleet:
            for i in range(1, self.args.hosts + 1):
                self.hosts.append(self._host(i).start())
            for i, host in enumerate(self.hosts * (self.args.workers_per_host or 1), start=1):
                self.workers.append(self._worker(i, host).start())
        for i in range(1, self.args.replicas + 1):
            self.replicas.append(self._replica(i).start())
        time.sleep(1.0)
        for worker in self.workers:
            if not worker.alive():
                raise StackError(f"{worker.name} exited at start; see {worker.log}")
        self.nginx = Nginx(
            self.out / "nginx", _free_port(), [f"127.0.0.1:{r.env['PORT']}" for r in self.replicas],
            rate=self.args.nginx_rate, burst=self.args.nginx_rate * 2,
        ).start()  # fmt: skip
        print(
            f"load: stack up in {time.monotonic() - t0:.0f} s: {self.nginx.url} -> {len(self.replicas)} replicas"
            + (
                f", {len(self.workers)} workers, {len(self.hosts)} fake hosts, RabbitMQ"
                if self.fleet
                else (" (API only, no workers)" if self.args.api_only else " (embedded workers)")
            )
            + f"; PostgreSQL, SeaweedFS S3; logs in {self.out / 'logs'}",
            flush=True,
        )
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.join(60)
        parts = [*self.extra, *self.replicas, *self.workers, *self.hosts]
        for proc in parts:
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest anyway
                print(f"load: stopping {proc.name}: {exc}", file=sys.stderr)
        for server in (self.nginx, self.rabbit, self.s3, self.postgres):
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:  # noqa: BLE001
                    print(f"load: stopping {type(server).__name__}: {exc}", file=sys.stderr)

    @property
    def db_url(self) -> str:
        return self.postgres.url

    @property
    def broker_url(self) -> str | None:
        return self.rabbit.url if self.rabbit else None

    def _create_key(self) -> str:
        import subprocess

        argv = runner_argv("keys", "create", "load-test", "--db", self.db_url, "--max-queued", "0",
                           "--per-minute", "0")  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.out)
        if done.returncode:
            raise StackError(f"sonic-runner keys create failed: {done.stderr.strip()[-400:]}")
        return done.stdout.strip().splitlines()[-1]

    def _replica(self, i: int) -> Proc:
        port = _free_port()
        where = ["--bind", "127.0.0.1", "--port", str(port), "--db", self.db_url,
                 "--bucket", f"s3://{BUCKET}", "--s3-endpoint", self.s3.endpoint]  # fmt: skip
        if self.args.api_only:  # the app of `serve` without its in-process worker: jobs stay queued
            argv = [sys.executable, "-m", "benchmarks.load.api_only", *where]
        else:  # --fleet: the replicas publish each job to RabbitMQ and render nothing themselves
            argv = runner_argv("serve", *where, *(["--broker", self.broker_url] if self.fleet else []))
        return Proc(
            f"api-{i}", "api", argv, self.out / "logs" / f"api-{i}.log",
            env={**self.env, "PORT": str(port)}, cwd=self.out / "run" / f"api-{i}",
            ready_url=f"http://127.0.0.1:{port}/healthz",
        )  # fmt: skip

    def _host(self, i: int) -> Proc:
        port = _free_port()
        argv = [sys.executable, "-m", "tests.fake_comfy", "--port", str(port), "--root", str(self.out / "hosts" / f"host-{i}"),
                "--time-scale", str(self.args.time_scale), "--seed", str(i),
                # A GPU host with the weights: the loader offers them (and the templates' own choices).
                "--model-files", FAKE_MODEL_FILES]  # fmt: skip
        for spec in self.args.job_times or DEFAULT_JOB_TIMES:
            argv += ["--job-times", spec]
        return Proc(
            f"host-{i}", "host", argv, self.out / "logs" / f"host-{i}.log", cwd=ROOT,
            ready_url=f"http://127.0.0.1:{port}/_fake/stats", env={"URL": f"http://127.0.0.1:{port}"},
        )  # fmt: skip

    def _worker(self, i: int, host: Proc) -> Proc:
        # The lead's fleet worker (issue 8): one per ComfyUI host.
        argv = runner_argv(
            "worker", "--broker", self.broker_url, "--db", self.db_url, "--host", host.env["URL"],
            "--bucket", f"s3://{BUCKET}", "--s3-endpoint", self.s3.endpoint, "--pools", self.args.pools,
        )  # fmt: skip
        return Proc(f"worker-{i}", "worker", argv, self.out / "logs" / f"worker-{i}.log",
                    env=self.env, cwd=self.out / "run" / f"worker-{i}")  # fmt: skip

    # ------------------------------------------------------------------ what the monitor sees
    def components(self) -> list[tuple[str, str, list[int]]]:
        out = [(p.name, p.kind, p.pids()) for p in (*self.replicas, *self.workers, *self.hosts, *self.extra)]
        if self.nginx is not None and self.nginx.process is not None:
            out.append(("nginx", "nginx", popen_pids(self.nginx)))
        out.append(("postgres", "postgres", postgres_pids(self.postgres)))
        out.append(("s3", "s3", popen_pids(self.s3)))
        if self.rabbit is not None:
            out.append(("rabbitmq", "rabbitmq", popen_pids(self.rabbit)))
        return out

    def host_urls(self) -> list[tuple[str, str]]:
        return [(h.name, h.env["URL"]) for h in self.hosts]

    def broker_queues(self) -> list[str]:
        from comfyui_sonic.runner.fleet.queues import parse_pools, queue_name

        return [queue_name(p) for p in parse_pools(self.args.pools)]

    # ------------------------------------------------------------------ faults
    def _pick(self, kind: str, procs: list[Proc]) -> Proc:
        if not procs:
            raise StackError(f"no {kind} to act on")
        proc = procs[self._next[kind] % len(procs)]
        self._next[kind] += 1
        return proc

    def _later(self, seconds: float, action) -> None:
        def run() -> None:
            time.sleep(seconds)
            try:
                action()
            except Exception as exc:  # noqa: BLE001
                print(f"load: fault recovery failed: {exc}", file=sys.stderr, flush=True)

        timer = threading.Thread(target=run, daemon=True)
        timer.start()
        self._timers.append(timer)

    def _start_again(self, proc: Proc, tries: int = 6) -> None:
        """Start a stopped component as a supervisor would: again after 5 s while it fails (a broker down)."""
        for attempt in range(1, tries + 1):
            try:
                proc.start()
                return
            except StackError as exc:
                if attempt == tries:
                    raise
                print(
                    f"load: {proc.name} did not start again ({str(exc).splitlines()[0]}); retrying in 5 s",
                    flush=True,
                )
                time.sleep(5.0)

    def inject(self, fault: Fault) -> str:
        if fault.action in FLEET_ONLY and not self.fleet:
            raise StackError(
                f"{fault.action} needs --fleet (the embedded replicas have no separate workers or hosts)"
            )
        if fault.action == "kill-worker":
            worker = self._pick("worker", self.workers)
            pid = worker.pids()
            worker.kill()
            self._later(5.0, lambda: self._start_again(worker))
            return f"kill -9 {worker.name} (pid {pid[0] if pid else '?'}); started again after 5 s"
        if fault.action == "restart-broker":
            began = time.monotonic()
            self.rabbit.restart()
            return f"RabbitMQ killed and started again ({time.monotonic() - began:.1f} s)"
        if fault.action == "stop-replica":
            replica = self._pick("replica", self.replicas)
            replica.stop()
            self._later(fault.arg, lambda: self._start_again(replica))
            return f"SIGTERM {replica.name}; started again after {fault.arg:g} s"
        if fault.action == "kill-host":
            host = self._pick("host", self.hosts)
            host.kill()
            self._later(fault.arg, lambda: self._start_again(host))
            return f"kill -9 {host.name}; back after {fault.arg:g} s"
        if fault.action == "oom":
            for _name, url in self.host_urls():
                request = urllib.request.Request(
                    url + "/_fake/faults", data=json.dumps({"oom_rate": fault.arg}).encode(),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                urllib.request.urlopen(request, timeout=5).close()
            return f"{fault.arg:.0%} of jobs on every host end out of memory from now on"
        raise StackError(f"unknown fault {fault.action}")


# ---------------------------------------------------------------------------------- the run


def short_speech(out: Path, seconds: float) -> Path:
    """The demo speech clip cut to ``seconds`` (short clips keep the lite renders cheap)."""
    dest = out / "inputs" / f"speech_{seconds:g}s.wav"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(ROOT / "demo" / "sonic_example_speech.wav"), "rb") as src:
        params = src.getparams()
        frames = src.readframes(int(params.framerate * seconds))
    with wave.open(str(dest), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames)
    return dest


def locust_proc(out: Path, url: str, args: argparse.Namespace, api_key: str | None, audio: Path) -> Proc:
    env = {
        "SONIC_LOAD_STEPS": args.steps,
        "SONIC_LOAD_PACE_S": str(args.pace),
        "SONIC_LOAD_ARRIVALS": args.arrivals,
        "SONIC_LOAD_FOLLOW": args.follow,
        "SONIC_LOAD_POLL_S": str(args.poll),
        "SONIC_LOAD_JOB_TIMEOUT_S": str(args.job_timeout),
        "SONIC_LOAD_TEMPLATE": args.template
        or ("sonic_sonic" if getattr(args, "fleet", False) else "sonic_lite"),
        "SONIC_LOAD_TIERS": args.tiers,
        "SONIC_LOAD_PRIORITIES": args.priorities,
        "SONIC_LOAD_JOBS_FILE": str(out / "jobs.jsonl"),
        "SONIC_LOAD_AUDIO": str(audio),
    }
    if api_key:
        env["SONIC_API_KEY"] = api_key
    argv = [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
            "--host", url, "--csv", str(out / "locust"), "--only-summary", "--loglevel", "WARNING",
            "--exit-code-on-error", "0"]  # fmt: skip
    return Proc("locust", "load", argv, out / "logs" / "locust.log", env=env, cwd=ROOT)


def run_locust(proc: Proc, total_s: float) -> None:
    proc.start()
    try:
        proc.process.wait(total_s + 120)
    except Exception:  # noqa: BLE001 - a hung Locust is stopped, the run is still reported
        proc.stop()
    if proc.process.returncode not in (0, None):
        tail = proc.log.read_text(errors="replace")[-800:]
        raise StackError(f"locust exited with {proc.process.returncode}: {tail}")


def drain(db_url: str, limit_s: float) -> float:
    """Wait until no job is queued or running (or ``limit_s``); returns the seconds waited."""
    from comfyui_sonic.runner.jobs import FINAL_STATES
    from comfyui_sonic.runner.store import JobStore

    began = time.monotonic()
    with JobStore(db_url) as store:
        while time.monotonic() - began < limit_s:
            if all(state in FINAL_STATES for state in store.counts()):
                break
            time.sleep(1.0)
    return time.monotonic() - began


def execute(args: argparse.Namespace, mode: str) -> int:
    from . import accounting, report
    from .monitor import Monitor

    steps = parse_steps(args.steps)
    faults = [parse_fault(f) for f in args.fault or []]
    out = Path(args.out or ROOT / "results" / "load" / time.strftime(f"%Y%m%d-%H%M%S-{mode}")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "mode": mode,
        "argv": sys.argv[1:],
        "started": time.time(),
        **{k: v for k, v in vars(args).items() if k != "func"},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    stack = Stack(out, args)
    monitor = runner = None
    try:
        stack.start()
        audio = short_speech(out, args.audio_s)
        loader = locust_proc(out, stack.nginx.url, args, stack.api_key, audio)
        stack.extra.append(loader)
        monitor = Monitor(
            out, stack.components, stack.db_url, hosts=stack.host_urls(),
            renderers=0 if stack.fleet or args.api_only else len(stack.replicas),
            broker=(stack.broker_url, stack.broker_queues()) if stack.fleet else None,
            interval=args.interval, storage=(stack.s3, BUCKET) if mode == "soak" else None,
        ).start()  # fmt: skip
        if faults:
            runner = FaultRunner(stack, faults, out / "faults.jsonl").start()
        print(f"load: {len(steps)} steps, {steps[-1].end_s:.0f} s; results in {out}", flush=True)
        run_locust(loader, steps[-1].end_s)
        if runner is not None:
            runner.stop()
        waited = drain(stack.db_url, args.drain)
        print(f"load: load over; drained for {waited:.0f} s", flush=True)
        monitor.stop()
        monitor = None
        accounting.write(out, stack)
    except (StackError, StepError, FaultError) as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    finally:
        if monitor is not None:
            monitor.stop()
        stack.stop()
    summary = report.build(out, soak=(mode == "soak"))
    print(report.console(summary), flush=True)
    return 0 if summary["verdict"]["ok"] else 1


def execute_target(args: argparse.Namespace) -> int:
    from . import report

    steps = parse_steps(args.steps)
    out = Path(args.out or ROOT / "results" / "load" / time.strftime("%Y%m%d-%H%M%S-target")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(
        json.dumps(
            {
                "mode": "target",
                "url": args.url,
                "started": time.time(),
                "steps": args.steps,
                "p99_ms": args.p99_ms,
                "max_errors": args.max_errors,
            }  # fmt: skip
        )
    )
    audio = Path(args.audio) if args.audio else short_speech(out, args.audio_s)
    loader = locust_proc(
        out, args.url.rstrip("/"), args, args.api_key or os.environ.get("SONIC_API_KEY"), audio
    )
    try:
        run_locust(loader, steps[-1].end_s)
    except StackError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    summary = report.build(out)
    print(report.console(summary), flush=True)
    return 0 if summary["verdict"]["ok"] else 1


def _load_options(p: argparse.ArgumentParser, steps: str) -> None:
    p.add_argument("--steps", default=steps, help=f"USERS:SECONDS per step (default {steps})")
    p.add_argument(
        "--pace", type=float, default=1.0, help="seconds between a user's submissions (0: closed loop)"
    )
    p.add_argument(
        "--arrivals",
        choices=("poisson", "paced"),
        default="poisson",
        help="with --pace: random gaps of mean PACE (independent clients; default) or exactly PACE",
    )
    p.add_argument("--follow", choices=("poll", "events", "none"), default="poll")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between status polls")
    p.add_argument("--job-timeout", type=float, default=300.0)
    p.add_argument(
        "--template", default=None, help="template prefix (default sonic_lite; --fleet sonic_sonic)"
    )
    p.add_argument("--tiers", default="fast=0.3,balanced=0.5,hq=0.2")
    p.add_argument("--priorities", default="P0=0.1,P1=0.3,P2=0.6")
    p.add_argument("--audio-s", type=float, default=1.0, help="length of the speech clip sent (default 1 s)")
    p.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/load/<time>-<mode>)"
    )
    p.add_argument("--p99-ms", type=float, default=250.0, help="knee: bound on p99 submit latency")
    p.add_argument(
        "--max-errors", type=float, default=0.01, help="knee: bound on the share of failed submissions"
    )


def _stack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fleet", action="store_true", help="RabbitMQ + `sonic-runner worker` + fake hosts (issue 8)"
    )
    p.add_argument(
        "--api-only",
        action="store_true",
        help="replicas without workers (jobs stay queued): what the API path alone sustains",
    )
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--hosts", type=int, default=3, help="fake ComfyUI hosts (--fleet)")
    p.add_argument("--workers-per-host", type=int, default=1)
    p.add_argument("--pools", default="512,768,1024")
    p.add_argument(
        "--job-times",
        action="append",
        metavar="TIER=SPEC",
        help="fake host job times (default *=uniform:40:60)",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=0.1,
        help="fake job times x this (default 0.1: 40-60 s per 10 s clip -> 0.4-0.6 s for the 1 s clip sent)",
    )
    p.add_argument("--nginx-rate", type=int, default=1000, help="nginx limit_req rate per API key (r/s)")
    p.add_argument(
        "--fault",
        action="append",
        metavar="ACTION@S[:ARG]",
        help="kill-worker, restart-broker, stop-replica, kill-host, oom",
    )
    p.add_argument(
        "--drain", type=float, default=120.0, help="seconds to wait for queued jobs after the load"
    )
    p.add_argument("--interval", type=float, default=2.0, help="seconds between resource samples")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run", help="stepped ramp against the local stack")
    _load_options(run, "5:60,10:60,20:60,40:60")
    _stack_options(run)
    soak = sub.add_parser("soak", help="steady load; fails when a component's memory or fds keep growing")
    _load_options(soak, "")
    _stack_options(soak)
    soak.add_argument("--users", type=int, default=5)
    soak.add_argument("--minutes", type=float, default=30.0)
    soak.add_argument(
        "--max-growth", type=float, default=0.05, help="allowed RSS growth after warm-up (0.05 = 5%%)"
    )
    smoke = sub.add_parser(
        "smoke", help="CI: a 60 s ramp with a replica stopped mid-way (and the fleet faults with --fleet)"
    )
    _load_options(smoke, "2:20,4:20,6:20")
    _stack_options(smoke)
    target = sub.add_parser("target", help="only the clients: ramp against any deployment")
    _load_options(target, "5:60,10:60,20:60")
    target.add_argument("--url", required=True, help="the deployment, e.g. https://sonic.example.com")
    target.add_argument("--api-key", default=None, help="API key (or SONIC_API_KEY)")
    target.add_argument("--audio", default=None, help="speech clip to send (default: 1 s of the demo clip)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (timeout, a CI job cancelled) unwinds like Ctrl-C, so the servers started are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    before = own_children()
    try:
        if args.mode == "target":
            return execute_target(args)
        if getattr(args, "api_only", False) and args.fleet:
            print("load: --api-only and --fleet exclude each other (no renderer vs. fleet renderers)",
                  file=sys.stderr)  # fmt: skip
            return 2
        if getattr(args, "api_only", False):
            args.follow, args.drain = "none", 0.0  # nothing renders: jobs stay queued
        if args.mode == "soak":
            args.steps = f"{args.users}:{args.minutes * 60:g}"
        if args.mode == "smoke" and args.pace == 1.0 and not args.fleet:
            args.pace = 4.0  # embedded replicas render on this CPU: ~0.3 jobs/s, so the queue drains
        if args.mode == "smoke" and args.drain == 120.0:
            args.drain = 300.0  # a busy CI machine renders slowly: the smoke waits for every job
        if args.mode == "smoke" and not args.fault:
            args.fault = ["stop-replica@25:10"]
            if args.fleet:
                args.fault = ["oom@5:0.1", "kill-worker@10", "stop-replica@15:8", "restart-broker@35"]
        return execute(args, args.mode)
    except (StepError, FaultError) as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    finally:
        left = stop_children_since(before)
        if left:
            print(f"load: stopped what was still running: {', '.join(left)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
