"""The webhook outbox table: deliveries queued in the job database, claimed by a sender.

Why a table: a delivery written in the same database as the job's end survives a kill of
any process, and a restarted sender (on any machine) picks it up. Claims are a
compare-and-set on ``next_at``, so two senders do not POST the same row at the same time;
a receiver still sees at-least-once delivery and drops duplicates by ``webhook-id``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import func, select, update

from .job_store import JobStore
from .schema import webhooks as webhooks_t

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Delivery:
    id: int
    msg_id: str
    job_id: str
    url: str
    event_type: str
    body: str
    attempts: int
    created_at: float


class Outbox:
    """Queue, claim and settle webhook deliveries in a ``JobStore``'s database."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._engine = store.engine

    def enqueue(
        self, job_id: str, url: str, event_type: str, payload: dict, msg_id: str | None = None
    ) -> str:
        """Queue one delivery; the same (job, event) is queued once however often it is reported.

        ``msg_id`` (the ``webhook-id`` receivers de-duplicate on) defaults to one per job and event.
        """
        msg_id = msg_id or f"msg_{job_id}_{event_type}"
        now = time.time()
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        stmt = self._store.dialect.insert(webhooks_t).values(
            msg_id=msg_id,
            job_id=job_id,
            url=url,
            event_type=event_type,
            body=body,
            state=PENDING,
            attempts=0,
            next_at=now,
            created_at=now,
        )
        with self._engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["msg_id"]))
        return msg_id

    def job_ended(self, job, status: str | None = None) -> str | None:
        """Queue the delivery of an API job's end (done, dead, cancelled) to its ``webhook_url``, if any.

        One place builds the body, whichever process ended the job (the worker that ran it,
        or the API replica that cancelled it while it was queued). ``status`` defaults to the
        job's state ("cancelled" for a job a client cancelled).
        """
        url = (job.spec or {}).get("webhook_url")
        if not url:
            return None
        if status is None:
            status = "cancelled" if job.state == "dead" and job.error_kind == "cancelled" else job.state
        payload = {
            "type": f"job.{status}",
            "id": job.job_id,
            "status": status,
            "outputs": list(job.outputs),
            "error": job.error,
        }
        return self.enqueue(job.job_id, url, f"job.{status}", payload)

    def claim(self, limit: int = 20, lease_s: float = 60.0, now: float | None = None) -> list[Delivery]:
        """Take up to ``limit`` due deliveries for ``lease_s`` seconds (then they are due again)."""
        now = time.time() if now is None else now
        with self._store.reading() as conn:
            rows = conn.execute(
                select(webhooks_t)
                .where(webhooks_t.c.state == PENDING, webhooks_t.c.next_at <= now)
                .order_by(webhooks_t.c.next_at, webhooks_t.c.id)
                .limit(limit)
            ).all()
        claimed: list[Delivery] = []
        for row in rows:
            with self._engine.begin() as conn:
                won = conn.execute(
                    update(webhooks_t)
                    .where(webhooks_t.c.id == row.id, webhooks_t.c.next_at == row.next_at)
                    .values(next_at=now + lease_s)
                ).rowcount
            if won == 1:
                claimed.append(
                    Delivery(
                        row.id,
                        row.msg_id,
                        row.job_id,
                        row.url,
                        row.event_type,
                        row.body,
                        row.attempts,
                        row.created_at,
                    )
                )
        return claimed

    def delivered(self, delivery: Delivery) -> None:
        self._settle(delivery, state=DELIVERED, delivered_at=time.time(), last_error=None)

    def retry_later(self, delivery: Delivery, error: str, at: float) -> None:
        self._settle(delivery, state=PENDING, next_at=at, last_error=error[:500])

    def give_up(self, delivery: Delivery, error: str) -> None:
        self._settle(delivery, state=FAILED, last_error=error[:500])

    def _settle(self, delivery: Delivery, **values) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(webhooks_t)
                .where(webhooks_t.c.id == delivery.id)
                .values(attempts=webhooks_t.c.attempts + 1, **values)
            )

    def retry_now(self, now: float | None = None) -> int:
        """Make every pending delivery due at once (a restarted sender tries them without waiting)."""
        now = time.time() if now is None else now
        with self._engine.begin() as conn:
            return conn.execute(
                update(webhooks_t)
                .where(webhooks_t.c.state == PENDING, webhooks_t.c.next_at > now)
                .values(next_at=now)
            ).rowcount

    def backlog(self) -> int:
        """Deliveries not yet made (the ``webhook backlog`` metric)."""
        with self._store.reading() as conn:
            return int(conn.execute(select(func.count()).where(webhooks_t.c.state == PENDING)).scalar_one())

    def rows(self) -> list[dict]:
        with self._store.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(select(webhooks_t).order_by(webhooks_t.c.id))]
