"""The whole service on real parts: two `serve --broker` replicas, two workers, three fake hosts,
RabbitMQ, PostgreSQL, a SeaweedFS bucket and a webhook receiver; 100 jobs from 10 clients, while
one replica, one worker and the receiver are killed. Nothing may be lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
import requests

from tests.fake_comfy import FakeComfy
from tests.fake_comfy.process import free_port
from tests.runner.api.test_serve import FACE, SPEECH
from tests.runner.test_webhook_delivery import SECRET, Receiver
from tests.services.seaweedfs import ACCESS_KEY, SECRET_KEY, start_seaweedfs

from .harness import ENV, RUNNER, wait_until

N_JOBS, N_CLIENTS = 100, 10
BUCKET = "sonic-e2e"


@pytest.fixture(scope="module")
def seaweed():
    server = start_seaweedfs()
    yield server
    server.stop()


def _serve(fleet, port: int, env: dict, s3: str) -> subprocess.Popen:
    argv = [*RUNNER, "serve", "--port", str(port), "--broker", fleet.broker_url, "--db", fleet.db_url]
    argv += ["--bucket", f"s3://{BUCKET}", "--s3-endpoint", s3, "--no-auth", "--allow-private-webhooks"]
    log = (fleet.root / f"serve{port}.log").open("w")
    proc = subprocess.Popen(argv, env=env, cwd=fleet.root, stdout=log, stderr=log)
    wait_until(lambda: _ready(port) or proc.poll() is not None, 60, f"serve on {port}")
    assert proc.poll() is None, (fleet.root / f"serve{port}.log").read_text()
    return proc


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _submit(ports: list[int], alive: dict[int, bool], webhook: str) -> str:
    """POST one job, to whichever replica is up; the same Idempotency-Key on every retry."""
    key = uuid.uuid4().hex
    for attempt in range(40):
        port = [p for p in ports if alive[p]][attempt % max(1, sum(alive.values()))]
        try:
            answer = requests.post(
                f"http://127.0.0.1:{port}/v1/jobs",
                files={"image": ("face.jpg", FACE), "audio": ("s.wav", SPEECH)},
                data={"tier": "fast", "webhook_url": webhook},
                headers={"Idempotency-Key": key},
                timeout=30,
            )
        except requests.RequestException:
            time.sleep(0.3)
            continue
        if answer.status_code in (200, 202):
            return answer.json()["id"]
        time.sleep(0.3)
    raise AssertionError("a job could not be submitted to any replica")


def _metric(port: int, name: str) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.timeout(600)
def test_100_jobs_over_http_survive_a_replica_a_worker_and_the_receiver_dying(fleet, seaweed, tmp_path):
    seaweed.client().create_bucket(Bucket=BUCKET)
    env = dict(
        ENV,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        SONIC_WEBHOOK_SECRET=SECRET,
    )
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    hosts = [FakeComfy(tmp_path / f"host{i}", run_seconds=0.3).start() for i in range(3)]
    receiver = Receiver()
    receiver_port = receiver.server.server_address[1]
    try:
        ports = [free_port(), free_port()]
        replicas = {port: _serve(fleet, port, env, seaweed.endpoint) for port in ports}
        alive = dict.fromkeys(ports, True)
        for urls in ([hosts[0].url, hosts[1].url], [hosts[2].url]):
            argv = [*RUNNER, "worker", "--broker", fleet.broker_url, "--db", fleet.db_url, "--lease", "3"]
            argv += [
                "--bucket",
                f"s3://{BUCKET}",
                "--s3-endpoint",
                seaweed.endpoint,
                "--poll-interval",
                "0.2",
            ]
            for url in urls:
                argv += ["--host", url]
            log = (fleet.root / f"worker{len(fleet.workers)}.log").open("w")
            fleet.workers.append(subprocess.Popen(argv, env=env, cwd=fleet.root, stdout=log, stderr=log))

        ids: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            for _ in range(N_JOBS // N_CLIENTS):
                job_id = _submit(ports, alive, receiver.url)
                with lock:
                    ids.append(job_id)

        clients = [threading.Thread(target=client) for _ in range(N_CLIENTS)]
        for thread in clients:
            thread.start()
        with fleet.store() as store:
            done = lambda: store.counts().get("done", 0)  # noqa: E731
            wait_until(lambda: len(ids) >= 25, 120, "25 submissions")
            alive[ports[0]] = False
            replicas[ports[0]].send_signal(signal.SIGKILL)  # an API replica dies mid-run
            wait_until(lambda: done() >= 30, 180, "30 jobs done")
            fleet.workers[0].send_signal(signal.SIGKILL)  # a worker (two hosts) dies, for good
            wait_until(lambda: done() >= 45, 180, "45 jobs done")
            receiver.close()  # the webhook receiver is down for a while
            time.sleep(2.0)
            receiver_back = Receiver(port=receiver_port)
            receiver_back.seen, receiver_back.bad_signatures = receiver.seen, receiver.bad_signatures
            receiver = receiver_back
            for thread in clients:
                thread.join(120)
            assert len(ids) == N_JOBS and len(set(ids)) == N_JOBS
            try:
                wait_until(lambda: done() >= N_JOBS, 300, "every job done")
            except AssertionError:
                stuck = [
                    (j.job_id, j.state, j.host, store.holder(j.job_id), j.error)
                    for j in store.jobs()
                    if j.state != "done"
                ]
                raise AssertionError(f"{store.counts()}: {stuck[:10]}") from None
            assert store.counts() == {"done": N_JOBS}
        outputs = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix="jobs/").get("Contents", [])
        with_output = {o["Key"].split("/")[1] for o in outputs if "/outputs/" in o["Key"]}
        assert with_output == set(ids)
        try:
            wait_until(lambda: len({d["id"] for d in receiver.seen}) >= N_JOBS, 120, "100 webhook deliveries")
        except AssertionError:
            from sqlalchemy import text

            with fleet.store() as store, store.engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT state, attempts, last_error, count(*) FROM sonic_webhooks GROUP BY 1, 2, 3")
                ).all()
            raise AssertionError(f"{len(receiver.seen)} seen; outbox {rows}") from None
        assert receiver.bad_signatures == 0
        assert {d["payload"]["id"] for d in receiver.seen} == set(ids)
        assert {d["payload"]["status"] for d in receiver.seen} == {"done"}
        survivor = ports[1]
        assert _metric(survivor, 'sonic_jobs{state="done"}') == N_JOBS
        wait_until(lambda: _metric(survivor, "sonic_webhook_backlog") == 0, 60, "an empty webhook backlog")
    finally:
        receiver.close()
        for proc in locals().get("replicas", {}).values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        for host in hosts:
            host.stop()
