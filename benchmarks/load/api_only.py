"""A ``serve`` replica without the in-process worker: the API path alone, or (``--broker``) fleet mode.

    python -m benchmarks.load.api_only --port 8001 --db postgresql+psycopg://... --bucket s3://b --s3-endpoint URL
    python -m benchmarks.load.api_only ... --broker amqp://...     # publish each accepted job to RabbitMQ

In fleet mode the API replicas never render: they publish to the broker and the workers
render. It builds the app with runner.api.app.create_app(start_workers=False), the app
``sonic-runner serve`` runs. Without ``--broker`` jobs stay queued, so the load test measures
what the API, nginx, PostgreSQL and the bucket sustain without the embedded renders competing
for the CPU. With ``--broker`` it publishes every new job with runner/fleet/publisher.py to its
resolution pool: a STAND-IN for ``sonic-runner serve --broker`` until that exists (stack.py uses
the real one as soon as ``serve --help`` lists ``--broker``).
"""

from __future__ import annotations

import argparse
import sys


def publish_on_submit(service, broker_url: str, pools: str | None = None) -> None:
    """Make ``service.submit`` publish each job it creates (pool from the template's resolution)."""
    from comfyui_sonic.runner.fleet.publisher import Publisher
    from comfyui_sonic.runner.fleet.queues import parse_pools, pool_for
    from comfyui_sonic.runner.workflow import get_param

    publisher = Publisher(broker_url, parse_pools(pools))
    submit = service.submit

    def submit_and_publish(*args, **kwargs):
        job, created = submit(*args, **kwargs)
        if created:
            try:
                resolution = int(get_param(service.template(job.spec["template"]), "min_resolution"))
            except Exception:  # noqa: BLE001 - a template without a resolution: the smallest pool
                resolution = None
            publisher.publish(job, pool=pool_for(resolution, publisher.pools))
        return job, created

    service.submit = submit_and_publish


def main(argv: list[str] | None = None) -> int:
    import uvicorn
    from comfyui_sonic.runner.api.app import create_app
    from comfyui_sonic.runner.api.settings import ServeSettings

    ap = argparse.ArgumentParser(prog="python -m benchmarks.load.api_only", description=__doc__)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--s3-endpoint", default=None)
    ap.add_argument("--broker", default=None, help="publish each accepted job (fleet mode)")
    ap.add_argument("--pools", default=None)
    args = ap.parse_args(argv)
    settings = ServeSettings(
        db_url=args.db, storage=args.bucket, s3_endpoint=args.s3_endpoint, broker_url=args.broker
    )
    app = create_app(settings, start_workers=False)
    if args.broker:
        publish_on_submit(app.app.state.service, args.broker, args.pools)
    what = f"publishing to {args.broker}" if args.broker else "no worker: jobs stay queued"
    print(f"api_only: listening on http://{args.bind}:{args.port} ({what})", file=sys.stderr)
    uvicorn.run(app, host=args.bind, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
