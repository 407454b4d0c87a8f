"""Durable webhooks in the Standard Webhooks format, sent from the job store's outbox.

Every POST carries ``webhook-id`` (the same on every retry, so receivers drop
duplicates), ``webhook-timestamp`` (so they reject replays) and ``webhook-signature``:
``v1,`` + base64 HMAC-SHA256 over ``"{id}.{timestamp}.{body}"`` with the shared secret
(``whsec_`` + base64, as the Standard Webhooks libraries expect). Deliveries are retried
on the standard schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about a day) with
jitter, from a background thread that never blocks a worker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import random
import threading
import time

import requests

from .secrets import register_secret, safe_url
from .store.outbox import Delivery, Outbox

log = logging.getLogger(__name__)

#: Seconds to wait after attempt n fails (Standard Webhooks' recommended schedule).
RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)


class WebhookSecretError(ValueError):
    """The secret is not in the ``whsec_<base64>`` form: one line saying how to make one."""


def parse_secret(text: str) -> bytes:
    """``whsec_<base64>`` (or bare base64) -> key bytes."""
    raw = text.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise WebhookSecretError(
            "webhook secret must be 'whsec_' + base64 of at least 16 random bytes; make one with: "
            "python -c \"import base64,os; print('whsec_'+base64.b64encode(os.urandom(24)).decode())\""
        )
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value for one message."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, msg_id: str, body: str, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
    }


class WebhookDispatcher:
    """Sends due outbox deliveries on a background thread until ``stop``."""

    def __init__(
        self,
        outbox: Outbox,
        secret: str,
        *,
        timeout: float = 10.0,
        poll_s: float = 0.5,
        schedule: tuple[float, ...] = RETRY_SCHEDULE,
        session: requests.Session | None = None,
    ) -> None:
        register_secret(secret)
        self._key = parse_secret(secret)
        self._outbox = outbox
        self._timeout = timeout
        self._poll = poll_s
        self._schedule = schedule
        self._session = session or requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookDispatcher:
        self._thread = threading.Thread(target=self._loop, name="sonic-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.send_due()
            except Exception:  # noqa: BLE001 - a database blip must not end the sender
                log.exception("webhook sender: could not read the outbox; retrying")
                sent = 0
            if not sent:
                self._stop.wait(self._poll)

    def send_due(self, limit: int = 20) -> int:
        """Send what is due now; returns how many deliveries were tried."""
        deliveries = self._outbox.claim(limit=limit, lease_s=self._timeout + 30)
        for delivery in deliveries:
            self._send(delivery)
        return len(deliveries)

    def _send(self, delivery: Delivery) -> None:
        headers = signed_headers(self._key, delivery.msg_id, delivery.body)
        try:
            answer = self._session.post(
                delivery.url, data=delivery.body.encode(), headers=headers, timeout=self._timeout
            )
            if 200 <= answer.status_code < 300:
                self._outbox.delivered(delivery)
                return
            error = f"HTTP {answer.status_code}"
            if answer.status_code == 410:  # the receiver says: stop sending this
                self._outbox.give_up(delivery, error + " (gone)")
                return
        except requests.RequestException as exc:
            error = f"{type(exc).__name__} calling {safe_url(delivery.url)}"
        attempt = delivery.attempts  # 0 for the first try
        if attempt >= len(self._schedule):
            log.warning(
                "webhook %s for job %s: giving up after %d tries (%s)",
                delivery.msg_id,
                delivery.job_id,
                attempt + 1,
                error,
            )
            self._outbox.give_up(delivery, error)
            return
        wait = self._schedule[attempt] * random.uniform(0.9, 1.1)
        self._outbox.retry_later(delivery, error, time.time() + wait)
