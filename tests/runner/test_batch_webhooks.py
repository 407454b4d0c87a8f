"""`batch --webhook`: job ends go through the durable outbox beside the journal, kill -9 included."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from comfyui_sonic.runner.batch_webhooks import DurableWebhooks, outbox_path
from comfyui_sonic.runner.jobs import JobRecord

from tests.runner.test_webhook_delivery import SECRET, Receiver
from tests.services._common import free_port

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the fake server lives in tests/fake_comfy, imported from the repo root
    sys.path.insert(0, str(REPO))
from tests.fake_comfy import FakeComfy  # noqa: E402
from tests.runner.test_resume_kill import make_inputs, runner_cmd  # noqa: E402


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch):
    monkeypatch.setenv("SONIC_WEBHOOK_SECRET", SECRET)


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _ended(job_id: str, state: str = "done", **changes) -> JobRecord:
    outputs = [f"out/{job_id}.mp4"] if state == "done" else []
    return JobRecord(
        job_id=job_id, row=1, state=state, attempts=1, outputs=outputs, finished_at=time.time(), **changes
    )


def _event(job: JobRecord) -> dict:
    return {"event": "job", "job_id": job.job_id, "state": job.state, "row": job.row, "ts": time.time()}


def _rows(journal: Path, sql: str) -> list[tuple]:
    path = outbox_path(journal)
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the runner is creating its tables right now
        return []
    finally:
        db.close()


def test_each_job_end_is_delivered_once_signed_the_standard_way(tmp_path):
    receiver = Receiver()
    jobs = {
        "a": _ended("a"),
        "b": _ended("b", "dead", error="no face found in the image", error_kind="input"),
    }
    hooks = DurableWebhooks(tmp_path / "journal.sqlite", receiver.url, batch_id="b1", jobs=jobs, poll_s=0.05)
    try:
        for job in jobs.values():  # the batch reports each end (after the open already queued them)
            hooks(_event(job))
        hooks({"event": "job", "job_id": "c", "state": "running"})  # not an end: nothing
        hooks({"event": "batch", "total": 2})
        assert hooks.close(timeout=20) is True
    finally:
        receiver.close()
    assert receiver.bad_signatures == 0
    by_job = {d["payload"]["job_id"]: d for d in receiver.seen}
    assert sorted(by_job) == ["a", "b"] and len(receiver.seen) == 2
    assert by_job["a"]["payload"]["type"] == "job.done" and by_job["a"]["payload"]["outputs"] == ["out/a.mp4"]
    assert by_job["b"]["payload"]["error"] == "no face found in the image"


def test_a_hanging_receiver_never_blocks_the_batch(tmp_path):
    release, entered = threading.Event(), threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            entered.set()
            release.wait(20)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    jobs: dict[str, JobRecord] = {}
    hooks = DurableWebhooks(tmp_path / "journal.sqlite", url, batch_id="b1", jobs=jobs, poll_s=0.05)
    try:
        jobs["first"] = _ended("first")
        hooks(_event(jobs["first"]))
        assert entered.wait(10)  # the receiver holds the request open...
        started = time.monotonic()
        for i in range(50):  # ...and the batch hands over job ends without waiting for it
            jobs[f"j{i}"] = _ended(f"j{i}")
            hooks(_event(jobs[f"j{i}"]))
        assert time.monotonic() - started < 10
        assert hooks.pending >= 50
        assert hooks.close(timeout=0.2) is False  # gives up waiting; the rows stay for --resume
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert (
        len(_rows(tmp_path / "journal.sqlite", "SELECT 1 FROM sonic_webhooks WHERE state = 'pending'")) >= 50
    )


def test_the_body_carries_no_host_credentials_and_no_webhook_secret(tmp_path, monkeypatch):
    from comfyui_sonic.runner.secrets import parse_hosts

    monkeypatch.setenv("GPU_TOKEN", "tok-webhook-leak-check")
    (host,) = parse_hosts(["https://gpu1.example.com token_env=GPU_TOKEN"])
    receiver = Receiver()
    error = f"502 from https://user:pw-in-url@gpu1.example.com with {host.headers} (secret {SECRET})"
    jobs = {"a": _ended("a", "dead", error=error)}
    try:
        hooks = DurableWebhooks(
            tmp_path / "journal.sqlite", receiver.url, batch_id="b1", jobs=jobs, poll_s=0.05
        )
        assert hooks.close(timeout=20) is True
    finally:
        receiver.close()
    body = json.dumps(receiver.seen[0]["payload"])
    assert "tok-webhook-leak-check" not in body and "pw-in-url" not in body and SECRET not in body
    assert "502 from https://***@gpu1.example.com" in body


@pytest.mark.parametrize(
    ("secret", "words"),
    [(None, "SONIC_WEBHOOK_SECRET is not set"), ("plain-password", "whsec_")],
)
def test_a_missing_or_malformed_secret_is_refused_at_start(tmp_path, monkeypatch, secret, words):
    if secret is None:
        monkeypatch.delenv("SONIC_WEBHOOK_SECRET")
    else:
        monkeypatch.setenv("SONIC_WEBHOOK_SECRET", secret)
    with pytest.raises(ValueError, match=words):
        DurableWebhooks(tmp_path / "journal.sqlite", "http://127.0.0.1:9/hook", batch_id="b1")


@pytest.mark.timeout(240)
def test_kill_9_before_delivery_then_resume_delivers_exactly_once_per_job(tmp_path):
    """The receiver is down while the batch runs; the batch is killed with SIGKILL while it waits to
    deliver. One job's delivery is even removed from the outbox, as if the kill had come between the
    journal's commit and the outbox write. `--resume` (receiver up) sends each job end exactly once."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    with FakeComfy(tmp_path / "host", run_seconds=0.05) as host:
        workflow, manifest = make_inputs(tmp_path / "in", host.url, 5)
        out = tmp_path / "out"
        journal = out / "journal.sqlite"
        env = dict(os.environ, PYTHONPATH=str(REPO), SONIC_WEBHOOK_SECRET=SECRET)
        argv = runner_cmd(workflow, manifest, out, [host.url], "--webhook", url)
        proc = subprocess.Popen(
            argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        try:
            _wait_for(
                lambda: len(_rows(journal, "SELECT 1 FROM sonic_webhooks WHERE attempts > 0")) == 5, 120
            )
            db = sqlite3.connect(journal)
            assert db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall() == [("done", 5)]
            db.close()
            assert proc.poll() is None  # still waiting to deliver
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert _rows(journal, "SELECT COUNT(*) FROM sonic_webhooks WHERE state = 'pending'") == [(5,)]
        db = sqlite3.connect(outbox_path(journal))
        db.execute("DELETE FROM sonic_webhooks WHERE job_id = 'clip003'")
        db.commit()
        db.close()

        receiver = Receiver(port=port)
        try:
            resumed = subprocess.run(
                runner_cmd(workflow, manifest, out, [host.url], "--resume"),  # (the URL is remembered)
                cwd=tmp_path,
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert resumed.returncode == 0, resumed.stderr[-2000:]
            again = subprocess.run(  # a second resume sends nothing twice
                runner_cmd(workflow, manifest, out, [host.url], "--resume", "--webhook", url),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert again.returncode == 0, again.stderr[-2000:]
        finally:
            receiver.close()
    assert receiver.bad_signatures == 0
    ids = [d["id"] for d in receiver.seen]
    assert len(ids) == len(set(ids)) == 5
    assert sorted(d["payload"]["job_id"] for d in receiver.seen) == [f"clip{i:03d}" for i in range(5)]
    assert {d["payload"]["state"] for d in receiver.seen} == {"done"}
    assert _rows(journal, "SELECT state, COUNT(*) FROM sonic_webhooks GROUP BY state") == [("delivered", 5)]
