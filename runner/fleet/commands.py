"""The fleet-mode command lines: ``worker``, and ``batch`` / ``status`` / ``report`` with ``--broker``/``--db``.

Kept apart from runner/cli.py (the local commands) so each reads on its own; cli.py only
adds these options and calls in here.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path

from ..secrets import add_host_options

DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent.parent / "workflows" / "api"


def add_worker_parser(sub) -> None:
    worker = sub.add_parser(
        "worker", help="fleet mode: run the broker's jobs on a ComfyUI host (one worker per host)"
    )
    worker.add_argument("--broker", required=True, metavar="URL", help="e.g. amqp://user:pass@rabbit:5672//")
    worker.add_argument("--db", required=True, metavar="URL", help="job store, e.g. postgresql://...")
    add_host_options(worker, "hosts file: this worker's hosts")
    worker.add_argument(
        "--fleet-hosts-file",
        type=Path,
        help="every host of the fleet (their credentials), to ask another host about a job taken over",
    )
    worker.add_argument("--inflight", type=int, default=1, help="jobs at once per host (default 1)")
    worker.add_argument("--pools", default=None, help="resolution pools, e.g. 512,768,1024 (the default)")
    worker.add_argument(
        "--bucket", default=None, help="object store of API jobs: s3://BUCKET[/PREFIX] or a folder"
    )
    worker.add_argument("--s3-endpoint", default=None, metavar="URL")
    worker.add_argument("--max-attempts", type=int, default=3, help="attempts per job (default 3)")
    worker.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds one attempt may run (default 3600)"
    )
    worker.add_argument("--failover-grace", type=float, default=30.0)
    worker.add_argument("--lease", type=float, default=30.0, help="seconds a job stays held without renewal")
    worker.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="SIGTERM: seconds to let running jobs finish before handing them back (default 120)",
    )
    worker.add_argument("--poll-interval", type=float, default=2.0)
    worker.add_argument(
        "--keep-history",
        action="store_true",
        help="leave done prompts in the host's history (default: deleted once recorded, so a "
        "render host's memory does not grow with every job)",
    )
    worker.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    worker.add_argument("--name", default=None, help="this worker's name in the job store (default host-pid)")
    worker.add_argument("--templates-dir", type=Path, default=DEFAULT_TEMPLATES, help=argparse.SUPPRESS)
    worker.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    worker.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port"
    )
    worker.add_argument("--metrics-bind", default="127.0.0.1", help="address of /metrics (default 127.0.0.1)")


def add_fleet_options(batch: argparse.ArgumentParser) -> None:
    group = batch.add_argument_group("fleet mode (publish to a broker; workers run the jobs)")
    group.add_argument(
        "--broker", default=None, metavar="URL", help="publish to this RabbitMQ instead of running"
    )
    group.add_argument("--db", default=None, metavar="URL", help="job store shared with the workers")
    group.add_argument("--batch", dest="batch_name", default=None, help="the batch's name in the store")
    group.add_argument("--pools", default=None, help="resolution pools (default 512,768,1024)")


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, metavar="URL", help="read a fleet batch from this job store")
    parser.add_argument("--batch", dest="batch_name", default=None, help="the fleet batch's name")


# ---------------------------------------------------------------------- worker
def cmd_worker(args: argparse.Namespace) -> int:
    from ..malloc_arenas import cap_malloc_arenas

    cap_malloc_arenas()  # before any thread starts (runner/malloc_arenas.py)
    from ..metrics import HostGauges, Metrics, observe_job_end
    from ..retry import RetryPolicy
    from ..secrets import parse_hosts
    from ..storage import open_store
    from ..store import JobStore
    from ..store.outbox import Outbox
    from .handler import HandlerConfig
    from .publisher import Publisher
    from .queues import parse_pools
    from .worker import Worker, WorkerError, WorkerOptions, check_broker

    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s sonic-worker %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    hosts = parse_hosts(args.hosts, args.hosts_file)
    if not hosts:
        raise ValueError("worker: give --host URL (the ComfyUI host this worker feeds) or --hosts-file FILE")
    if args.inflight < 1 or args.max_attempts < 1:
        raise ValueError("--inflight and --max-attempts must be at least 1")
    if args.lease < 1:
        raise ValueError("--lease must be at least 1 second (a worker renews it three times per lease)")
    pools = parse_pools(args.pools)
    check_broker(args.broker)
    store = JobStore(args.db, record_events=True)  # (the followers read its state events)
    storage = open_store(args.bucket, s3_endpoint=args.s3_endpoint) if args.bucket else None
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="sonic-worker-"))
    config = HandlerConfig(
        worker=args.name or f"{socket.gethostname()}-{os.getpid()}",
        work_dir=work_dir,
        templates_dir=args.templates_dir,
        policy=RetryPolicy(max_attempts=args.max_attempts),
        lease_s=args.lease,
        pools=pools,
        timeout=args.timeout,
        poll_interval=args.poll_interval,
        failover_grace=args.failover_grace,
        forget_history=not args.keep_history,
    )
    publisher = Publisher(args.broker, pools)
    outbox = Outbox(store)
    fleet = parse_hosts(None, args.fleet_hosts_file) if args.fleet_hosts_file else []
    metrics = Metrics() if args.metrics_port else None

    def job_ended(job) -> None:
        outbox.job_ended(job)
        if metrics is not None:
            observe_job_end(metrics, job)

    worker = Worker(
        args.broker,
        store,
        hosts,
        config,
        publisher,
        WorkerOptions(
            inflight=args.inflight,
            drain_timeout=args.drain_timeout,
            keeper_interval=min(5.0, args.lease / 3),  # (three renewals per lease)
            reap_interval=args.lease,
        ),
        storage=storage,
        on_job_end=job_ended,
        fleet_hosts=fleet,
        metrics=metrics,
    )
    if metrics is not None:
        from prometheus_client import start_http_server

        metrics.registry.register(HostGauges(worker.host_gauges))
        start_http_server(args.metrics_port, addr=args.metrics_bind, registry=metrics.registry)
    try:
        worker.preflight()
    except WorkerError as exc:
        print(f"sonic-runner worker: {exc}", file=sys.stderr)
        return 2
    print(
        f"sonic-runner worker {config.worker}: {len(hosts)} host(s), pools {','.join(map(str, pools))}, "
        f"inflight {args.inflight}; SIGTERM stops it (running jobs finish or go back to the queue)",
        file=sys.stderr,
    )
    try:
        return worker.run()
    finally:
        publisher.close()
        store.close()


# ---------------------------------------------------------------------- batch
def cmd_fleet_batch(args: argparse.Namespace, sinks_and_closers) -> int:
    """``batch --broker --db``: publish, then follow until every job ended (Ctrl-C: stop following)."""
    from ..store import JobStore
    from .fleet_batch import FleetBatch, FleetBatchConfig
    from .publisher import Publisher
    from .queues import parse_pools

    if not args.db:
        raise ValueError("batch --broker: give --db URL too (the job store the workers share)")
    if args.hosts or args.hosts_file:
        raise ValueError(
            "batch --broker: hosts belong to the workers (`sonic-runner worker --host`), not here"
        )
    publisher = Publisher(args.broker, parse_pools(args.pools), delays=False)
    store = JobStore(args.db)
    try:
        batch = FleetBatch(
            FleetBatchConfig(
                workflow_path=args.workflow,
                manifest_path=args.manifest,
                out_dir=args.out,
                params=dict(args.sets),
                name=args.batch_name,
                resume=args.resume,
            ),
            store,
            publisher,
        )
        published = batch.publish()
        print(
            f"sonic-runner: batch {batch.name}: {batch.total} job(s) in {store.url}, "
            f"{published} published to the broker",
            file=sys.stderr,
        )
        sinks, closers = sinks_and_closers(args)
        batch.sinks = sinks
        try:
            code = batch.follow()
        except KeyboardInterrupt:
            left = sum(n for s, n in store.counts(batch=batch.name).items() if s not in ("done", "dead"))
            for close in closers:
                close.close()
            print(
                f"sonic-runner: stopped following; {left} unfinished job(s) stay queued for the workers. "
                f"Follow again with: sonic-runner batch ... --resume --batch {batch.name}",
                file=sys.stderr,
            )
            return 130
        for close in closers:
            close.close()
        if not args.quiet:  # (the quiet sink reports dead jobs itself)
            dead = store.jobs(["dead"], batch=batch.name, limit=21)
            for job in dead[:20]:
                print(
                    f"dead: {job.spec.get('name') or job.job_id} (row {job.row}): {job.error}",
                    file=sys.stderr,
                )
            if len(dead) > 20:
                print(
                    "... and more dead jobs; see `sonic-runner report --db URL --batch NAME`", file=sys.stderr
                )
        return code
    finally:
        publisher.close()
        store.close()


# ---------------------------------------------------------------------- status / report
def fleet_records(args: argparse.Namespace) -> tuple[list, list, dict]:
    """(jobs, attempts, meta) of a fleet batch, in the shapes the local journal gives."""
    from ..store import JobStore

    if not args.batch_name:
        raise ValueError("--db: name the batch with --batch (its name is printed when it is published)")
    with JobStore(args.db, upgrade=False) as store:
        jobs = store.jobs(batch=args.batch_name)
        if not jobs:
            raise ValueError(f"--batch {args.batch_name}: no such batch in {store.url}")
        prefix = f"{args.batch_name}."
        attempts = [a for a in store.attempts() if a["job_id"].startswith(prefix)]
        meta = dict(store.meta().get(f"batch:{args.batch_name}") or {})
    return jobs, attempts, meta
