"""Progress rows of one job in the job store, at most a few a second.

Why throttled: an API client or a following ``batch`` polls these rows, and a render reports
every step; the last step (value == total) is always written, so a follower sees 100%.
"""

from __future__ import annotations

import time
from typing import Any

#: Progress rows written per job and second, at most.
PROGRESS_PER_S = 4.0


class ProgressRecorder:
    """Writes ``progress`` events of one job: ``{"node", "percent", ...extra}``."""

    def __init__(self, store: Any, job_id: str, per_second: float = PROGRESS_PER_S) -> None:
        self._store = store
        self._job_id = job_id
        self._interval = 1.0 / per_second
        self._last = 0.0

    def record(self, value: Any, total: Any, node: Any = None, **extra: Any) -> None:
        if not total:
            return
        now = time.monotonic()
        if now - self._last < self._interval and value != total:
            return
        self._last = now
        percent = round(100.0 * float(value or 0) / float(total), 1)
        self._store.add_event(self._job_id, "progress", {"node": node, "percent": percent, **extra})
