"""The load test's own record of every submission and job end (JSON lines), and error kinds.

Locust's statistics count requests; the report needs jobs: which step a submission was in,
its latency, what became of it. Plain Python (no Locust import) so the report and the
accounting read the same file the locustfile writes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class JobsLog:
    """Append-only JSON lines; ``None`` path: records are dropped (a Locust run without a report)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, record: dict) -> None:
        if self.path is None:
            return
        line = json.dumps({"ev": event, "pid": os.getpid(), **record}) + "\n"
        with self._lock, self.path.open("a") as fh:
            fh.write(line)


def read_jobs(path: Path) -> Iterator[dict]:
    """Every record of a jobs file (a line cut short by a kill is skipped)."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def error_kind(status: int, body: str) -> str:
    """``"429:rate_limited"``: the HTTP status and the API's error code (or who answered)."""
    code = None
    try:
        code = (json.loads(body).get("error") or {}).get("code")
    except (ValueError, AttributeError):
        if "nginx" in body:
            code = "nginx"
    return f"{status}:{code or 'other'}"
