"""Webhooks: a receiver on loopback checks our signature; failures retry; a stuck receiver never stalls the batch."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comfyui_sonic.runner.webhooks import WebhookSender, sign, verify

SECRET = "s3cret-webhook-key"


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch):
    monkeypatch.setenv("SONIC_WEBHOOK_SECRET", SECRET)


class Receiver:
    """A tiny webhook receiver: verifies X-Sonic-Signature as a real one would."""

    def __init__(self, fail_first: int = 0, hang: threading.Event | None = None):
        self.fail_first = fail_first
        self.hang = hang
        self.entered = threading.Event()
        self.calls: list[dict] = []  # every request: headers, body, signature_ok
        self.lock = threading.Lock()

    def accepted(self) -> list[dict]:
        return [json.loads(c["body"]) for c in self.calls if c["status"] == 200]


@contextmanager
def serve(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                failing = len(receiver.calls) < receiver.fail_first
                ok = verify(SECRET, body, self.headers.get("X-Sonic-Signature"))
                status = 500 if failing else (200 if ok else 401)
                receiver.calls.append({"headers": dict(self.headers), "body": body, "status": status})
            receiver.entered.set()
            if receiver.hang is not None:
                receiver.hang.wait(10)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/sonic"
    finally:
        if receiver.hang is not None:
            receiver.hang.set()
        server.shutdown()
        server.server_close()


def job_event(job_id: str, state: str, **extra) -> dict:
    return {
        "event": "job",
        "job_id": job_id,
        "row": 1,
        "state": state,
        "host": "gpu1",
        "attempt": 1,
        "error": None,
        "error_kind": None,
        "outputs": [f"out/{job_id}.mp4"] if state == "done" else [],
        "ts": 1_700_000_000.0,
        **extra,
    }


def test_finished_jobs_are_posted_with_a_signature_the_receiver_accepts():
    receiver = Receiver()
    with serve(receiver) as url:
        sender = WebhookSender(url, backoff=0.01)
        sender(job_event("a", "running"))  # not an end: no call
        sender(job_event("a", "done"))
        sender(job_event("b", "dead", error="no face found in the image", error_kind="input"))
        sender({"event": "batch", "total": 2, "done": 1, "dead": 1})
        assert sender.close(timeout=10) is True
    assert [c["status"] for c in receiver.calls] == [200, 200]
    done, dead = receiver.accepted()
    assert done["job_id"] == "a" and done["state"] == "done" and done["outputs"] == ["out/a.mp4"]
    assert dead["state"] == "dead" and dead["error"] == "no face found in the image"
    headers = receiver.calls[0]["headers"]
    assert headers["Content-Type"] == "application/json" and headers["X-Sonic-Event"] == "job.finished"
    assert headers["X-Sonic-Signature"] == sign(SECRET, receiver.calls[0]["body"])
    assert sender.delivered == 2 and sender.failures == []


def test_a_forged_signature_is_rejected_by_verify():
    body = b'{"job_id": "a"}'
    assert verify(SECRET, body, sign(SECRET, body))
    assert not verify(SECRET, body, sign("other-secret", body))
    assert not verify(SECRET, body + b" ", sign(SECRET, body))


def test_a_failing_receiver_is_retried_with_the_same_delivery_and_body():
    receiver = Receiver(fail_first=2)
    with serve(receiver) as url:
        sender = WebhookSender(url, backoff=0.01)
        sender(job_event("a", "done"))
        assert sender.close(timeout=10) is True
    assert [c["status"] for c in receiver.calls] == [500, 500, 200]
    assert len({c["headers"]["X-Sonic-Delivery"] for c in receiver.calls}) == 1
    assert len({c["body"] for c in receiver.calls}) == 1


def test_a_receiver_that_keeps_failing_is_given_up_on_and_recorded():
    receiver = Receiver(fail_first=100)
    with serve(receiver) as url:
        sender = WebhookSender(url, backoff=0.01, max_attempts=3)
        sender(job_event("a", "done"))
        assert sender.close(timeout=10) is False
    assert len(receiver.calls) == 3
    (failure,) = sender.failures
    assert failure["job_id"] == "a" and "HTTP 500" in failure["error"]


def test_a_hanging_receiver_never_blocks_the_batch():
    release = threading.Event()
    receiver = Receiver(hang=release)
    with serve(receiver) as url:
        sender = WebhookSender(url, backoff=0.01, timeout=30)
        sender(job_event("a", "done"))
        assert receiver.entered.wait(10)  # the receiver now holds the request open...
        for i in range(50):  # ...and the batch keeps handing over events without waiting
            sender(job_event(f"job{i}", "done"))
        assert not release.is_set()
        assert sender.pending >= 50
        # closing gives up after its timeout instead of waiting for the receiver
        assert sender.close(timeout=0.2) is False
        release.set()


def test_a_sender_without_its_secret_refuses_to_start(monkeypatch):
    monkeypatch.delenv("SONIC_WEBHOOK_SECRET")
    with pytest.raises(ValueError, match="SONIC_WEBHOOK_SECRET is not set"):
        WebhookSender("http://127.0.0.1:9/hook")


def test_an_unreachable_receiver_does_not_raise_into_the_batch():
    sender = WebhookSender("http://127.0.0.1:9/hook", backoff=0.01, max_attempts=2, timeout=1)
    sender(job_event("a", "done"))
    sender({"not": "an event"})
    assert sender.close(timeout=10) is False
    assert "ConnectionError" in sender.failures[0]["error"]


def test_the_body_carries_no_host_credentials_and_no_webhook_secret(monkeypatch):
    from comfyui_sonic.runner.secrets import parse_hosts

    monkeypatch.setenv("GPU_TOKEN", "tok-webhook-leak-check")
    (host,) = parse_hosts(["https://gpu1.example.com token_env=GPU_TOKEN"])
    receiver = Receiver()
    with serve(receiver) as url:
        sender = WebhookSender(url, backoff=0.01)
        error = f"502 from https://user:pw-in-url@gpu1.example.com with {host.headers} (secret {SECRET})"
        sender(job_event("a", "dead", error=error))
        assert sender.close(timeout=10) is True
    body = receiver.calls[0]["body"].decode()
    assert "tok-webhook-leak-check" not in body and "pw-in-url" not in body and SECRET not in body
    assert "502 from https://***@gpu1.example.com" in body
