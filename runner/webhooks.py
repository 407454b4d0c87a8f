"""Signed webhooks on each job's end, delivered without ever slowing the batch.

The batch calls the sender like any other event sink; finished jobs (done or
dead) are put on a queue and a background thread POSTs them. The body is JSON,
signed with HMAC-SHA256 over the raw bytes (header
`X-Sonic-Signature: sha256=<hex>`) with a secret read from the environment, so
a receiver can check the call came from us. Failures (connection, timeout,
429/5xx) are retried with exponential backoff and jitter; each delivery keeps
one `X-Sonic-Delivery` id across its retries so a receiver can drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import random
import threading
import time
import uuid

from .secrets import redact, redact_obj, register_secret, safe_url

log = logging.getLogger(__name__)

FINAL_STATES = ("done", "dead")
_RETRY_STATUS = {408, 425, 429}


def sign(secret: str | bytes, body: bytes) -> str:
    """The X-Sonic-Signature value for a body: "sha256=" + hex HMAC-SHA256."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature or "")


class WebhookSender:
    """Event sink that POSTs each finished job to `url` on a background thread.

    Calling it never blocks (it only enqueues) and never raises. `close(timeout)`
    waits up to `timeout` seconds for pending deliveries and reports whether all
    were delivered; whatever could not be delivered is in `failures`.
    """

    def __init__(
        self,
        url: str,
        secret_env: str = "SONIC_WEBHOOK_SECRET",
        *,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        secret = os.environ.get(secret_env)
        if not secret:
            raise ValueError(
                f"webhook: environment variable {secret_env} is not set; export the shared secret "
                "the receiver uses to check signatures"
            )
        register_secret(secret)
        self.url = url
        self.safe_url = safe_url(url)
        self._secret = secret.encode()
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.delivered = 0
        self.failures: list[dict] = []  # {"job_id", "delivery", "error"} per delivery given up on
        self._queue: queue.Queue[tuple[str, bytes, str] | None] = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._worker, name="sonic-webhooks", daemon=True)
        self._thread.start()

    def __call__(self, event: dict) -> None:
        try:
            if event.get("event") != "job" or event.get("state") not in FINAL_STATES:
                return
            if self._closing.is_set():
                self.failures.append(
                    {"job_id": event.get("job_id"), "delivery": None, "error": "sender closed"}
                )
                return
            delivery = uuid.uuid4().hex
            payload = {"type": "job.finished", "delivery": delivery, **redact_obj(_jsonable(event))}
            body = json.dumps(payload, sort_keys=True, default=str).encode()
            self._queue.put((str(event.get("job_id")), body, delivery))
        except Exception as exc:  # a sink must never break the batch
            log.warning("webhook: could not queue an event: %s", redact(str(exc)))

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def close(self, timeout: float = 30.0) -> bool:
        """Wait up to `timeout` s for queued deliveries; True when none is left undelivered."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks and time.monotonic() < deadline:
                self._queue.all_tasks_done.wait(max(0.0, deadline - time.monotonic()))
        self._closing.set()  # stops backoff sleeps and further retries
        self._queue.put(None)
        return self._queue.unfinished_tasks <= 1 and not self.failures

    # -- background thread -------------------------------------------------

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._closing.is_set():
                    self.failures.append({"job_id": item[0], "delivery": item[2], "error": "sender closed"})
                    continue
                self._deliver(*item)
            except Exception as exc:  # keep the thread alive whatever happens
                log.warning("webhook: delivery crashed: %s", redact(str(exc)))
            finally:
                self._queue.task_done()

    def _deliver(self, job_id: str, body: bytes, delivery: str) -> None:
        import requests  # lazily: keeps `sonic-runner --help` fast

        headers = {
            **self.headers,
            "Content-Type": "application/json",
            "User-Agent": "sonic-runner",
            "X-Sonic-Event": "job.finished",
            "X-Sonic-Delivery": delivery,
            "X-Sonic-Signature": sign(self._secret, body),
        }
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = requests.post(self.url, data=body, headers=headers, timeout=self.timeout)
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    return
                error = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in _RETRY_STATUS:
                    break  # the receiver refuses this body; sending it again will not help
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_attempts:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if self._closing.wait(delay):
                    error += " (sender closed before the next retry)"
                    break
        message = redact(f"webhook {self.safe_url} for job {job_id} failed: {error}")
        self.failures.append({"job_id": job_id, "delivery": delivery, "error": message})
        log.warning("%s", message)


def _jsonable(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "event"}
