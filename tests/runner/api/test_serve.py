"""`sonic-runner serve` as a service calls it: submit over HTTP, follow, download, refusals."""

from __future__ import annotations

import io
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from comfyui_sonic.runner.api.app import create_app
from comfyui_sonic.runner.api.settings import ServeSettings
from comfyui_sonic.runner.storage import S3Store
from comfyui_sonic.runner.store import JobStore
from comfyui_sonic.runner.store.api_keys import ApiKeys
from comfyui_sonic.runner.store.schema import idempotency as idem_t
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from tests.conftest import speech_like

ROOT = Path(__file__).resolve().parents[3]
FACE = (ROOT / "demo" / "sonic_example_face.jpg").read_bytes()


def _wav(seconds: float) -> bytes:
    samples = (speech_like(seconds) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


SPEECH = _wav(1.2)


def _settings(tmp_path: Path, **changes) -> ServeSettings:
    base = dict(
        db_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        storage=str(tmp_path / "objects"),
        work_dir=tmp_path / "work",
        auth=False,
    )
    return ServeSettings(**{**base, **changes})


def _files(
    image: bytes = FACE, audio: bytes = SPEECH, image_name: str = "face.jpg", audio_name: str = "s.wav"
):
    return {
        "image": (image_name, image, "application/octet-stream"),
        "audio": (audio_name, audio, "audio/wav"),
    }


def _wait_done(client: TestClient, url: str, headers=None, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url, headers=headers).json()
        if body["status"] in ("done", "dead", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job did not finish: {body}")


def test_the_embedded_default_renders_a_job_end_to_end(tmp_path):
    """What the README's curl example does: POST face + speech, poll, download the MP4."""
    import av

    with TestClient(create_app(_settings(tmp_path))) as client:
        answer = client.post("/v1/jobs", files=_files(), data={"duration": "5", "tier": "fast"})
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["status"] == "queued" and job["status_url"].endswith(job["id"])
        done = _wait_done(client, f"/v1/jobs/{job['id']}")
        assert done["status"] == "done", done
        assert done["template"] == "sonic_lite_fast"
        assert done["duration_s"] == pytest.approx(1.2, abs=0.01)
        assert done["notes"] == ["duration 5 s corrected to 1.200 s from the audio"]
        assert [a["state"] for a in done["attempts"]] == ["done"]
        (output,) = done["outputs"]
        video = client.get(output["url"].replace("http://testserver", ""))
        assert video.status_code == 200
        path = tmp_path / "out.mp4"
        path.write_bytes(video.content)
        with av.open(str(path)) as container:
            assert container.streams.video and container.streams.audio
            assert container.streams.video[0].frames == 30  # 1.2 s at 25 fps

        events = client.get(f"/v1/jobs/{job['id']}/events").text
        assert "event: progress" in events and '"state": "done"' in events

        metrics = client.get("/metrics").text
        assert 'sonic_jobs_submitted_total{priority="P1",tier="fast"} 1.0' in metrics
        assert 'sonic_jobs{state="done"} 1.0' in metrics
        assert 'sonic_jobs_finished_total{reason="",state="done"} 1.0' in metrics


def _empty(tmp_path: Path) -> bool:
    return _empty_but(tmp_path, {})


def _empty_but(tmp_path: Path, objects: dict) -> bool:
    """Nothing in the store but ``objects`` (the client's own uploads)."""
    files = {
        p.relative_to(tmp_path / "objects").as_posix()
        for p in (tmp_path / "objects").rglob("*")
        if p.is_file()
    }
    return files == set(objects)


@pytest.mark.parametrize(
    ("files", "data", "field", "words"),
    [
        (_files(image=b"just some text"), {}, "image", "not a picture"),
        (_files(image=FACE[: len(FACE) // 2]), {}, "image", "cannot be decoded"),
        (_files(audio=FACE), {}, "audio", "no audio stream"),
        (_files(audio=_wav(0.05)), {}, "audio", "at least 0.5 s"),
        (_files(audio=_wav(3.0)), {}, "audio", "at most 2 s"),
        (_files(), {"template": "sonic_nope"}, "template", "unknown"),
        (_files(), {"Animate.seed": "abc"}, "Animate.seed", "not a whole number"),
        (_files(), {"Nope.thing": "1"}, "Nope.thing", "Nope.thing"),
        (_files(), {"Sonic Model.model_dir": "/etc"}, "Sonic Model.model_dir", "place on the server"),
        (
            _files(),
            {"Save MP4.filename_prefix": "../../x"},
            "Save MP4.filename_prefix",
            "place on the server",
        ),
        (_files(), {"tier": "ultra"}, "tier", "fast, balanced, hq"),
        (_files(), {"priority": "P7"}, "priority", "P0, P1, P2"),
        (_files(), {"webhook_url": "ftp://example.com/x"}, "webhook_url", "http"),
        (_files(), {"webhook_url": "http://127.0.0.1:9/hook"}, "webhook_url", "non-public"),
        (_files(), {"webhook_url": "http://169.254.169.254/latest"}, "webhook_url", "non-public"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_stored(tmp_path, files, data, field, words):
    app = create_app(_settings(tmp_path, max_audio_s=2.0), start_workers=False)
    with TestClient(app) as client:
        answer = client.post("/v1/jobs", files=files, data=data)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["field"] == field and words in error["message"]
        assert "Traceback" not in answer.text
        assert client.get("/v1/jobs").json() == {"jobs": []}
    assert _empty(tmp_path)


def test_a_body_over_the_limit_is_refused_before_it_is_read(tmp_path):
    app = create_app(_settings(tmp_path, max_upload_bytes=10_000), start_workers=False)
    with TestClient(app) as client:
        answer = client.post("/v1/jobs", files=_files(image=bytes(3_000_000)))
        assert answer.status_code == 413 and "limit" in answer.json()["error"]["message"]

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(2000):
                yield bytes(1024 * 1024)

        streamed = client.post(
            "/v1/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
        )
        assert streamed.status_code == 413
    assert _empty(tmp_path)


def test_api_keys_see_only_their_own_jobs(tmp_path):
    settings = _settings(tmp_path, auth=True)
    app = create_app(settings, start_workers=False)
    with TestClient(app) as client:
        keys = ApiKeys(client.app.app.state.store)
        (_, mine), (other_key, theirs) = keys.create("shop"), keys.create("school")
        assert client.post("/v1/jobs", files=_files()).status_code == 401
        assert (
            client.post("/v1/jobs", files=_files(), headers={"authorization": "Bearer nope"}).status_code
            == 401
        )
        job = client.post("/v1/jobs", files=_files(), headers={"authorization": f"Bearer {mine}"}).json()
        assert (
            client.get(f"/v1/jobs/{job['id']}", headers={"authorization": f"Bearer {mine}"}).status_code
            == 200
        )
        other = client.get(f"/v1/jobs/{job['id']}", headers={"authorization": f"Bearer {theirs}"})
        assert other.status_code == 404  # not 403: ids do not leak
        assert client.get("/v1/jobs", headers={"authorization": f"Bearer {theirs}"}).json() == {"jobs": []}
        keys.revoke(other_key.key_id)
        assert client.get("/v1/jobs", headers={"authorization": f"Bearer {theirs}"}).status_code == 401


def test_per_key_limits_answer_429_with_retry_after(tmp_path):
    app = create_app(_settings(tmp_path, auth=True), start_workers=False)
    with TestClient(app) as client:
        _, secret = ApiKeys(client.app.app.state.store).create("burst", per_minute=2, max_queued=10)
        auth = {"authorization": f"Bearer {secret}"}
        assert [client.post("/v1/jobs", files=_files(), headers=auth).status_code for _ in range(2)] == [
            202,
            202,
        ]
        third = client.post("/v1/jobs", files=_files(), headers=auth)
        assert third.status_code == 429 and third.headers["retry-after"]
        assert "per minute" in third.json()["error"]["message"]


def test_a_key_with_max_queued_unfinished_jobs_is_refused_until_one_ends(tmp_path):
    app = create_app(_settings(tmp_path, auth=True), start_workers=False)
    with TestClient(app) as client:
        store = client.app.app.state.store
        key, secret = ApiKeys(store).create("queue", per_minute=0, max_queued=2)  # (0: no rate limit)
        auth = {"authorization": f"Bearer {secret}"}
        assert [client.post("/v1/jobs", files=_files(), headers=auth).status_code for _ in range(2)] == [
            202,
            202,
        ]
        refused = client.post("/v1/jobs", files=_files(), headers=auth)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_queued"
        assert "2 unfinished jobs" in refused.json()["error"]["message"]
        first = store.jobs(owner=key.key_id)[0]
        store.transition(first, "dead", error="cancelled", error_kind="cancelled", finished_at=1.0)
        assert client.post("/v1/jobs", files=_files(), headers=auth).status_code == 202


def test_a_key_without_limits_is_never_refused_and_costs_no_count(tmp_path):
    app = create_app(_settings(tmp_path, auth=True), start_workers=False)
    with TestClient(app) as client:
        store = client.app.app.state.store
        _, secret = ApiKeys(store).create("our own batch service", per_minute=0, max_queued=0)
        counted = []
        real = store.owner_load
        store.owner_load = lambda *a, **k: counted.append(1) or real(*a, **k)
        auth = {"authorization": f"Bearer {secret}"}
        assert {client.post("/v1/jobs", files=_files(), headers=auth).status_code for _ in range(4)} == {202}
        assert counted == []


def test_a_negative_limit_is_refused_when_the_key_is_made(tmp_path):
    with JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}") as store:
        with pytest.raises(ValueError, match="--per-minute -1: give a number of jobs, or 0 for no limit"):
            ApiKeys(store).create("typo", per_minute=-1)


def test_one_idempotency_key_makes_one_job_under_concurrent_requests(tmp_path):
    app = create_app(_settings(tmp_path), start_workers=False)
    with TestClient(app) as client:
        ids: list[str] = []

        def submit() -> None:
            for _ in range(5):
                answer = client.post("/v1/jobs", files=_files(), headers={"idempotency-key": "order-42"})
                assert answer.status_code in (200, 202), answer.text
                ids.append(answer.json()["id"])

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ids) == 40 and len(set(ids)) == 1
        assert len(client.get("/v1/jobs").json()["jobs"]) == 1


def _lose_the_answer_to_the_next_commit(store) -> None:
    """The next job stored commits, then its request fails: the connection dropped as the commit
    was answered (a database failover)."""
    stored = store.add_jobs

    def add_jobs_then_drop(*args, **kwargs):
        stored(*args, **kwargs)
        store.add_jobs = stored
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    store.add_jobs = add_jobs_then_drop


def test_a_retry_after_a_failure_past_the_stored_job_gets_that_job_not_a_second(tmp_path):
    # The job row committed, then the request failed (the database connection dropped as the
    # commit was answered): the client saw a 500 and retries with its key. It must get the job
    # that exists (it will render) - a new one would render the same request twice.
    app = create_app(_settings(tmp_path), start_workers=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _lose_the_answer_to_the_next_commit(client.app.app.state.store)
        key = {"idempotency-key": "order-43"}
        assert client.post("/v1/jobs", files=_files(), headers=key).status_code == 500
        retry = client.post("/v1/jobs", files=_files(), headers=key)
        assert retry.status_code == 200, retry.text
        (job,) = client.get("/v1/jobs").json()["jobs"]
        assert retry.json()["id"] == job["id"]


def test_a_key_whose_first_request_died_before_storing_its_job_is_taken_over_by_the_retry(tmp_path):
    # The replica died between binding the key and storing the job: the retry makes the job and
    # the key names it from then on, so a further retry gets it rather than a third job.
    from comfyui_sonic.runner.api.submit import ANONYMOUS, IDEMPOTENCY_STORE_S

    app = create_app(_settings(tmp_path), start_workers=False)
    with TestClient(app) as client:
        keys = ApiKeys(client.app.app.state.store)
        assert keys.claim_idempotency(ANONYMOUS, "order-44", "never-stored") == "never-stored"
        with client.app.app.state.store._engine.begin() as conn:  # bound long ago
            conn.execute(idem_t.update().values(created_at=time.time() - IDEMPOTENCY_STORE_S - 1))
        first = client.post("/v1/jobs", files=_files(), headers={"idempotency-key": "order-44"})
        again = client.post("/v1/jobs", files=_files(), headers={"idempotency-key": "order-44"})
        assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
        assert first.json()["id"] == again.json()["id"] != "never-stored"
        assert len(client.get("/v1/jobs").json()["jobs"]) == 1


def test_a_first_request_slower_than_its_binding_lasts_gets_the_retrys_job(tmp_path, monkeypatch):
    # Its upload outlived IDEMPOTENCY_STORE_S, so the retry took the key over and stored a job;
    # the first request, finishing late, answers with that job instead of storing a second.
    from comfyui_sonic.runner.api import submit

    monkeypatch.setattr(submit, "IDEMPOTENCY_STORE_S", 0.5)
    uploads = submit.JobService._put_inputs
    calls: list[str] = []

    def slow_first(self, job_id, files):
        calls.append(job_id)
        if len(calls) == 1:
            time.sleep(1.5)
        return uploads(self, job_id, files)

    monkeypatch.setattr(submit.JobService, "_put_inputs", slow_first)
    with TestClient(create_app(_settings(tmp_path), start_workers=False)) as client:
        key = {"idempotency-key": "order-45"}
        first: list = []
        slow = threading.Thread(
            target=lambda: first.append(client.post("/v1/jobs", files=_files(), headers=key))
        )
        slow.start()
        time.sleep(0.2)
        retry = client.post("/v1/jobs", files=_files(), headers=key)
        slow.join()
        (job,) = client.get("/v1/jobs").json()["jobs"]
        assert first[0].json()["id"] == retry.json()["id"] == job["id"]


def test_a_key_whose_job_the_broker_refused_on_a_retry_is_free_for_the_next(tmp_path):
    # The retry found the first request's stored job unpublished and the broker still down: the
    # job ends dead (503). A later retry must get a job that runs, not that dead one forever.
    from comfyui_sonic.runner.fleet.errors import BrokerError

    class Broker:
        pools, down = (512, 768, 1024), True

        def publish(self, job):
            if Broker.down:
                raise BrokerError("amqp://rabbit: unreachable")

    with TestClient(
        create_app(_settings(tmp_path), start_workers=False), raise_server_exceptions=False
    ) as client:
        client.app.app.state.service.publisher = Broker()
        _lose_the_answer_to_the_next_commit(client.app.app.state.store)
        key = {"idempotency-key": "order-46"}
        assert client.post("/v1/jobs", files=_files(), headers=key).status_code == 500
        assert client.post("/v1/jobs", files=_files(), headers=key).status_code == 503
        Broker.down = False
        last = client.post("/v1/jobs", files=_files(), headers=key)
        assert (last.status_code, last.json()["status"]) == (202, "queued"), last.text


def test_cancelling_a_queued_job_and_a_finished_one(tmp_path):
    app = create_app(_settings(tmp_path), start_workers=False)
    with TestClient(app) as client:
        job = client.post("/v1/jobs", files=_files()).json()
        cancelled = client.delete(f"/v1/jobs/{job['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = client.delete(f"/v1/jobs/{job['id']}")
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_finished"


def test_templates_health_and_readiness(tmp_path):
    with TestClient(create_app(_settings(tmp_path), start_workers=False)) as client:
        names = {t["name"]: t for t in client.get("/v1/templates").json()["templates"]}
        assert "sonic_lite_balanced" in names and "seed" in names["sonic_lite_balanced"]["inputs"]
        assert client.get("/healthz").json() == {"ok": True}
        ready = client.get("/readyz").json()
        assert ready == {"ready": True, "checks": {"database": "ok", "storage": "ok", "broker": "ok"}}


def test_a_finished_job_calls_its_webhook_signed_the_standard_way(tmp_path):
    from tests.runner.test_webhook_delivery import SECRET, Receiver

    receiver = Receiver()
    settings = _settings(tmp_path, webhook_secret=SECRET, allow_private_webhooks=True)
    try:
        with TestClient(create_app(settings)) as client:
            job = client.post("/v1/jobs", files=_files(), data={"webhook_url": receiver.url}).json()
            assert _wait_done(client, f"/v1/jobs/{job['id']}")["status"] == "done"
            deadline = time.monotonic() + 30
            while not receiver.seen and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        receiver.close()
    assert receiver.bad_signatures == 0
    (delivery,) = receiver.seen
    assert delivery["payload"]["id"] == job["id"] and delivery["payload"]["status"] == "done"


def test_outputs_in_an_s3_bucket_come_back_as_presigned_urls(tmp_path, monkeypatch):
    import requests

    from tests.services.seaweedfs import ACCESS_KEY, SECRET_KEY, start_seaweedfs

    seaweed = start_seaweedfs()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        settings = _settings(tmp_path, storage="s3://sonic-probe/serve-test", s3_endpoint=seaweed.endpoint)
        with TestClient(create_app(settings)) as client:
            answer = client.post("/v1/jobs", files=_files())
            assert answer.status_code == 202, answer.text
            done = _wait_done(client, f"/v1/jobs/{answer.json()['id']}")
            assert done["status"] == "done", done
            (output,) = done["outputs"]
            assert output["url"].startswith(seaweed.endpoint) and "Signature" in output["url"]
            video = requests.get(output["url"], timeout=30)
            assert video.status_code == 200 and video.content[4:8] == b"ftyp"
            assert client.get("/readyz").json()["checks"]["storage"] == "ok"
        bucket = S3Store(
            "sonic-probe", prefix="serve-test", endpoint_url=seaweed.endpoint, client=seaweed.client()
        )
        keys = [key for key, _ in bucket.keys()]
        assert sorted(k.split("/", 2)[2] for k in keys) == [
            "inputs/audio.wav",
            "inputs/image.jpg",
            f"outputs/{output['name']}",
        ]
    finally:
        seaweed.stop()


def test_keys_are_managed_from_the_command_line(tmp_path, capsys):
    from comfyui_sonic.runner.cli import main

    db = f"sqlite:///{tmp_path / 'keys.sqlite'}"
    assert main(["keys", "create", "shop", "--db", db, "--per-minute", "5"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("sk_")
    assert main(["keys", "list", "--db", db]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    key_id = line.split("\t")[0]
    assert "shop\tactive" in line and "per_minute=5" in line and secret not in line
    assert main(["keys", "revoke", key_id, "--db", db]) == 0
    assert main(["keys", "revoke", key_id, "--db", db]) == 2
    assert "no active key" in capsys.readouterr().err
    assert main(["keys", "create", "acme", "--db", db, "--objects-prefix", "uploads/acme"]) == 0
    assert main(["keys", "list", "--db", db]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("\tobjects=uploads/acme/")
    assert main(["keys", "create", "x", "--db", db, "--objects-prefix", "../up"]) == 2
    assert "--objects-prefix '../up': give a folder of the bucket" in capsys.readouterr().err


def test_two_replicas_on_one_postgresql_run_every_job_exactly_once(tmp_path, postgres_server):
    """Two `serve` processes share the database and the bucket: each job is taken by one worker."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_server.url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    settings = [
        _settings(tmp_path, db_url=postgres_server.url, work_dir=tmp_path / f"work{i}") for i in range(2)
    ]
    apps = [create_app(s) for s in settings]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        ids = [(first if i % 2 else second).post("/v1/jobs", files=_files()).json()["id"] for i in range(6)]
        finished = [_wait_done(first, f"/v1/jobs/{job_id}") for job_id in ids]
        assert [f["status"] for f in finished] == ["done"] * 6
        assert all(len(f["attempts"]) == 1 for f in finished)  # nobody ran a job twice
        seen_by_second = second.get("/v1/jobs").json()["jobs"]
        assert sorted(j["id"] for j in seen_by_second) == sorted(ids)
