"""``batch --webhook URL``: each job's end delivered through the durable outbox, like ``serve``'s.

Why not an in-memory queue: a runner killed with ``kill -9`` (or a receiver down for an
hour) lost every delivery not yet made. Here each job's end is written to an outbox table
in a SQLite file beside the journal (``journal.webhooks.sqlite``, the job store's schema)
and sent by the same ``WebhookDispatcher`` as the HTTP API: Standard Webhooks signatures
(secret ``whsec_...`` in ``SONIC_WEBHOOK_SECRET``), one ``webhook-id`` per job end, retried
with backoff. ``batch --resume`` sends whatever is still pending.

The journal stays the source of truth: a job's end is committed there first and the
delivery written after, so a kill between the two would lose it; on every start the sink
therefore queues a delivery for each job the journal shows ended since the webhook was set
(idempotent: a delivery already queued or made is not queued again).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from .jobs import FINAL_STATES, JobRecord
from .secrets import redact_obj, register_secret, safe_url

log = logging.getLogger(__name__)
SECRET_ENV = "SONIC_WEBHOOK_SECRET"


def outbox_path(journal: Path) -> Path:
    """``out/journal.sqlite`` -> ``out/journal.webhooks.sqlite``."""
    journal = Path(journal)
    return journal.with_name(f"{journal.stem}.webhooks.sqlite")


def payload(job: JobRecord, host_name: str | None = None) -> dict:
    """The JSON body of one job end (the same whichever path queued it)."""
    return redact_obj(
        {
            "type": f"job.{job.state}",
            "job_id": job.job_id,
            "row": job.row,
            "state": job.state,
            "host": job.host,
            "host_name": host_name,
            "attempt": job.attempts,
            "error": job.error,
            "error_kind": job.error_kind,
            "outputs": list(job.outputs),
            "finished_at": job.finished_at,
        }
    )


class DurableWebhooks:
    """Event sink of ``batch``: queues each job end in the outbox; a background thread sends them.

    ``close(timeout)`` waits up to ``timeout`` s for the backlog to drain, then stops the
    sender; what is left stays in the outbox for the next ``--resume``.
    """

    def __init__(
        self,
        journal: Path,
        url: str,
        *,
        batch_id: str,
        jobs: Mapping[str, JobRecord] | None = None,
        host_names: dict[str, str] | None = None,
        resume: bool = False,
        since: float | None = None,
        poll_s: float = 0.5,
    ) -> None:
        from .store import JobStore
        from .store.outbox import Outbox
        from .webhook_delivery import WebhookDispatcher, parse_secret

        secret = os.environ.get(SECRET_ENV)
        if not secret:
            raise ValueError(
                f"--webhook: environment variable {SECRET_ENV} is not set; export the receiver's shared secret "
                "(whsec_ + base64, the Standard Webhooks form)"
            )
        parse_secret(secret)  # a malformed secret is refused here, with how to make one
        register_secret(secret)  # never in a body or a log line
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
            raise ValueError(f"--webhook {safe_url(url)!r}: give an http:// or https:// URL")
        self.url = url
        self.path = outbox_path(journal)
        self._tag = hashlib.sha256(batch_id.encode()).hexdigest()[:12]
        self.jobs: Mapping[str, JobRecord] = jobs if jobs is not None else {}
        self.host_names = dict(host_names or {})
        if not resume and self.path.exists():
            self._discard_stale()
        self.store = JobStore(f"sqlite:///{self.path}")
        self.outbox = Outbox(self.store)
        meta = self.store.meta()
        if meta.get("batch") not in (None, self._tag):
            self.store.close()
            raise ValueError(
                f"--webhook: {self.path} belongs to another batch; move it away or resume that batch"
            )
        self.since = float(meta.get("webhook_since") or (since if since is not None else time.time()))
        self.store.set_meta({"batch": self._tag, "webhook_since": self.since, "url": url})
        self.queue_ended(self.jobs.values())
        if resume:
            self.outbox.retry_now()  # a new run is the moment to try again, not hours later
        self.sender = WebhookDispatcher(self.outbox, secret, poll_s=poll_s).start()

    def _discard_stale(self) -> None:
        """A new batch in this journal: an outbox left by an earlier batch of that name goes."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def msg_id(self, job_id: str, state: str) -> str:
        return f"msg_{self._tag}_{job_id}_{state}"

    def queue(self, job: JobRecord) -> None:
        if job.state not in FINAL_STATES:
            return
        host_name = self.host_names.get(job.host) if job.host else None
        self.outbox.enqueue(
            job.job_id,
            self.url,
            f"job.{job.state}",
            payload(job, host_name),
            self.msg_id(job.job_id, job.state),
        )

    def queue_ended(self, jobs: Iterable[JobRecord]) -> int:
        """Queue every job the journal shows ended since the webhook was set (a no-op for queued ones)."""
        n = 0
        for job in jobs:
            if job.state in FINAL_STATES and (job.finished_at or 0) >= self.since - 1:
                self.queue(job)
                n += 1
        return n

    def __call__(self, event: dict) -> None:
        """Batch event sink: a job event in a final state becomes a delivery (never raises)."""
        if event.get("event") != "job" or event.get("state") not in FINAL_STATES:
            return
        try:
            # The batch's own record (the journal has it committed by now), so this body is the
            # same one a resume would queue for this job.
            job = self.jobs.get(str(event["job_id"])) or JobRecord(
                job_id=str(event["job_id"]),
                row=int(event.get("row") or 0),
                state=event["state"],
                host=event.get("host"),
                attempts=int(event.get("attempt") or 0),
                error=event.get("error"),
                error_kind=event.get("error_kind"),
                outputs=list(event.get("outputs") or []),
                finished_at=event.get("ts"),
            )
            if event.get("host_name") and job.host:
                self.host_names[job.host] = event["host_name"]
            self.queue(job)
        except Exception as exc:  # noqa: BLE001 - a sink must never break the batch; resume re-queues it
            log.warning("webhook: could not queue job %s: %s", event.get("job_id"), exc)

    @property
    def pending(self) -> int:
        return self.outbox.backlog()

    def close(self, timeout: float = 30.0) -> bool:
        """Wait up to ``timeout`` s for every delivery; True when none is left."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self.outbox.backlog() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.sender.stop()
        left = self.outbox.backlog()
        self.store.close()
        if left:
            print(
                f"sonic-runner: webhook: {left} deliveries to {safe_url(self.url)} not made yet; they stay in "
                f"{self.path} and are sent by `batch ... --resume`",
                file=sys.stderr,
            )
        return left == 0


def recorded_url(journal: Path) -> str | None:
    """The webhook URL an earlier run of this batch used, if it left an outbox beside the journal."""
    path = outbox_path(journal)
    if not path.is_file():
        return None
    from .store import JobStore

    with JobStore(f"sqlite:///{path}") as store:
        url = store.meta().get("url")
    return str(url) if url else None
