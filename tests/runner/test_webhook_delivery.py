"""Durable webhooks: Standard Webhooks signatures a receiver's library accepts, retries, restarts."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comfyui_sonic.runner.store import JobStore
from comfyui_sonic.runner.store.outbox import Outbox
from comfyui_sonic.runner.webhook_delivery import WebhookDispatcher, WebhookSecretError, parse_secret
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


class Receiver:
    """A loopback receiver that checks every signature with the standardwebhooks library."""

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.fail_first = fail_first
        self.seen: list[dict] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    payload = Webhook(SECRET).verify(body, dict(self.headers.items()))
                except Exception:  # noqa: BLE001 - any verification failure
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.seen.append({"id": self.headers["webhook-id"], "payload": payload})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_deliveries_verify_with_the_standard_webhooks_library(store_url):
    receiver = Receiver()
    store = JobStore(store_url)
    outbox = Outbox(store)
    outbox.enqueue("job-1", receiver.url, "job.done", {"id": "job-1", "state": "done", "outputs": ["a.mp4"]})
    outbox.enqueue("job-1", receiver.url, "job.done", {"id": "job-1", "state": "done"})  # reported twice
    sender = WebhookDispatcher(outbox, SECRET, poll_s=0.05).start()
    try:
        _wait_for(lambda: outbox.backlog() == 0)
    finally:
        sender.stop()
        receiver.close()
    assert receiver.bad_signatures == 0
    assert receiver.seen == [
        {"id": "msg_job-1_job.done", "payload": {"id": "job-1", "state": "done", "outputs": ["a.mp4"]}}
    ]
    store.close()


def test_failed_deliveries_are_retried_with_the_same_id(store_url):
    receiver = Receiver(fail_first=2)
    store = JobStore(store_url)
    outbox = Outbox(store)
    outbox.enqueue("job-2", receiver.url, "job.dead", {"id": "job-2", "state": "dead"})
    sender = WebhookDispatcher(outbox, SECRET, poll_s=0.05, schedule=(0.1, 0.1, 0.1)).start()
    try:
        _wait_for(lambda: outbox.backlog() == 0)
    finally:
        sender.stop()
        receiver.close()
    (row,) = outbox.rows()
    assert (row["state"], row["attempts"]) == ("delivered", 3)
    assert [s["id"] for s in receiver.seen] == ["msg_job-2_job.dead"]
    store.close()


def test_a_delivery_survives_a_restart_of_everything(store_url):
    """Queued while the receiver is down and the sender dead; a new process delivers it."""
    first = JobStore(store_url)
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # the receiver is down
    outbox = Outbox(first)
    outbox.enqueue("job-3", url, "job.done", {"id": "job-3"})
    sender = WebhookDispatcher(outbox, SECRET, poll_s=0.05, schedule=(0.2,) * 50).start()
    _wait_for(lambda: outbox.rows()[0]["attempts"] >= 1)
    sender.stop()
    first.close()  # every process is gone; only the database remains

    revived = Receiver(port=receiver.server.server_address[1])  # the receiver is back

    second = JobStore(store_url)
    outbox = Outbox(second)
    sender = WebhookDispatcher(outbox, SECRET, poll_s=0.05, schedule=(0.2,) * 50).start()
    try:
        _wait_for(lambda: outbox.backlog() == 0)
    finally:
        sender.stop()
        revived.close()
    assert json.loads(outbox.rows()[0]["body"]) == {"id": "job-3"}
    assert [s["id"] for s in revived.seen] == ["msg_job-3_job.done"]
    second.close()


def test_two_senders_do_not_post_the_same_delivery_at_once(store_url):
    store = JobStore(store_url)
    outbox = Outbox(store)
    for i in range(20):
        outbox.enqueue(f"j{i}", "http://127.0.0.1:9/x", "job.done", {"i": i})
    now = time.time() + 1
    a, b = Outbox(JobStore(store_url)), Outbox(JobStore(store_url))
    ids_a = {d.id for d in a.claim(limit=20, now=now)}
    ids_b = {d.id for d in b.claim(limit=20, now=now)}
    assert len(ids_a) == 20 and ids_b == set()
    store.close()


def test_secrets_must_be_standard_webhooks_secrets():
    assert len(parse_secret(SECRET)) == 24
    with pytest.raises(WebhookSecretError, match="whsec_"):
        parse_secret("hunter2")
