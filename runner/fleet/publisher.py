"""Publishing jobs to the broker: one confirmed message per job, to its pool, at its priority.

Publishers (``batch --broker``, ``serve`` in fleet mode) and workers (retries, hand-backs)
share this. A message only names the job (``JobMessage``); the job store holds the rest,
so a message published twice is harmless (a worker drops the copy).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from ..jobs import JobRecord
from .errors import broker_error
from .queues import (
    DEFAULT_POOLS,
    JobMessage,
    declare_delay_queues,
    declare_topology,
    make_app,
    pool_for,
    publish_job,
)


def _batch_of(job: JobRecord) -> str:
    return str(job.spec.get("batch") or "")


class Publisher:
    """A Celery app bound to one broker, with the topology declared before the first message."""

    def __init__(self, broker_url: str, pools: Sequence[int] = DEFAULT_POOLS, *, delays: bool = True) -> None:
        self.broker_url = broker_url
        self.pools = tuple(sorted(pools))
        try:
            declare_topology(broker_url, self.pools)
            if delays:
                declare_delay_queues(broker_url, self.pools)
        except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; the user needs one line
            raise broker_error(broker_url, exc) from None
        self.app = make_app(broker_url, self.pools)
        self._lock = threading.Lock()

    def publish(self, job: JobRecord, *, pool: int | None = None, delay: float = 0.0) -> None:
        """One job, confirmed by the broker before this returns."""
        try:
            with self.app.producer_or_acquire() as producer:
                self._send(job, producer, pool=pool, delay=delay)
        except Exception as exc:  # noqa: BLE001
            raise broker_error(self.broker_url, exc) from None

    def publish_many(self, jobs: Iterable[JobRecord], on_published=None, chunk: int = 500) -> int:
        """Many jobs over one connection; ``on_published(ids)`` after each confirmed chunk."""
        count, done = 0, []
        try:
            with self.app.producer_or_acquire() as producer:
                for job in jobs:
                    self._send(job, producer)
                    done.append(job.job_id)
                    count += 1
                    if on_published is not None and len(done) >= chunk:
                        on_published(done)
                        done = []
        except Exception as exc:  # noqa: BLE001
            raise broker_error(self.broker_url, exc) from None
        finally:
            if on_published is not None and done:
                on_published(done)
        return count

    def _send(self, job: JobRecord, producer, *, pool: int | None = None, delay: float = 0.0) -> None:
        """The job's message to its pool (by its resolution unless ``pool`` is given), at its priority."""
        pool = pool if pool is not None else pool_for(job.resolution, self.pools)
        message = JobMessage(job_id=job.job_id, batch=_batch_of(job))
        publish_job(self.app, message, pool=pool, priority=job.priority, delay=delay, producer=producer)

    def close(self) -> None:
        self.app.close()
