"""A ``serve`` replica that only takes submissions (no in-process worker): the API path alone.

    python -m benchmarks.load.api_only --port 8001 --db postgresql+psycopg://... --bucket s3://b --s3-endpoint URL

In fleet mode the API replicas never render (they publish to the broker and the workers
render). Until ``sonic-runner worker`` exists, this stands in for such a replica so the load
test can measure what the API, nginx, PostgreSQL and the bucket sustain, without the
embedded lite renders competing for the same CPU; jobs stay queued. It builds the app with
runner.api.app.create_app(start_workers=False), the same app ``sonic-runner serve`` runs.
"""

from __future__ import annotations

import argparse
import sys


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
    args = ap.parse_args(argv)
    settings = ServeSettings(db_url=args.db, storage=args.bucket, s3_endpoint=args.s3_endpoint)
    print(
        f"api_only: listening on http://{args.bind}:{args.port} (no worker: jobs stay queued)",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings, start_workers=False), host=args.bind, port=args.port, log_level="warning"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
