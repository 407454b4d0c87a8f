"""A ``serve`` replica without the in-process worker: the API path alone (``stack run --api-only``).

    python -m benchmarks.load.api_only --port 8001 --db postgresql+psycopg://... --bucket s3://b --s3-endpoint URL

It runs the app ``sonic-runner serve`` runs (runner.api.app.create_app) with start_workers=False
and no broker: every accepted job is stored and stays queued, so the load test measures what the
API, nginx, PostgreSQL and the bucket sustain without the embedded renders competing for the CPU.
(``serve`` itself always renders: in-process, or with ``--broker`` through the fleet's workers.)
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from comfyui_sonic.runner.malloc_arenas import cap_malloc_arenas

    cap_malloc_arenas()  # as `serve` does
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
    app = create_app(settings, start_workers=False)
    print(
        f"api_only: listening on http://{args.bind}:{args.port} (no worker: jobs stay queued)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.bind, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
