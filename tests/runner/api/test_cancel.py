"""`DELETE /v1/jobs/{id}` of a job the embedded worker is rendering: it stops, and the next job runs."""

from __future__ import annotations

import time

from comfyui_sonic.runner.api.app import create_app
from fastapi.testclient import TestClient

from tests.runner.api.test_serve import _files, _settings, _wait_done, _wav


def _wait_rendering(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    """Until the job reports progress of its render (it is inside the engine's frame loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["status"] == "running" and body["progress"] and body["progress"]["percent"] < 100:
            return body
        assert body["status"] not in ("done", "dead", "cancelled"), body
        time.sleep(0.05)
    raise AssertionError(f"job never started rendering: {body}")


def test_cancelling_a_running_render_stops_it_and_the_worker_takes_the_next_job(tmp_path):
    from tests.runner.test_webhook_delivery import SECRET, Receiver

    receiver = Receiver()
    settings = _settings(tmp_path, max_audio_s=120, webhook_secret=SECRET, allow_private_webhooks=True)
    with TestClient(create_app(settings)) as client:
        hook = {"webhook_url": receiver.url}
        long_job = client.post("/v1/jobs", files=_files(audio=_wav(60.0)), data=hook).json()
        waiting = client.post("/v1/jobs", files=_files(), data=hook).json()
        next_job = client.post("/v1/jobs", files=_files()).json()
        _wait_rendering(client, long_job["id"])
        assert client.delete(f"/v1/jobs/{waiting['id']}").json()["status"] == "cancelled"  # (still queued)

        asked = time.monotonic()
        answer = client.delete(f"/v1/jobs/{long_job['id']}")
        waited = time.monotonic() - asked
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "cancelled", (body, waited)
        assert body["error"] == {
            "kind": "cancelled",
            "message": "cancelled by the client while it was rendering",
        }
        assert body["outputs"] == []
        assert [a["state"] for a in body["attempts"]] == ["cancelled"]
        assert body["progress"]["percent"] < 100  # it did not render to the end first

        assert _wait_done(client, next_job["status_url"].replace("http://testserver", ""))["status"] == "done"
        again = client.delete(f"/v1/jobs/{long_job['id']}")
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_finished"
        events = client.get(f"/v1/jobs/{long_job['id']}/events").text
        assert "event: cancel_requested" in events and '"state": "cancelled"' in events
        deadline = time.monotonic() + 30
        while len(receiver.seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    receiver.close()
    assert receiver.bad_signatures == 0
    ended = sorted((d["payload"]["id"], d["payload"]["type"]) for d in receiver.seen)
    assert ended == sorted([(long_job["id"], "job.cancelled"), (waiting["id"], "job.cancelled")])

    objects = tmp_path / "objects" / "jobs"
    assert not (objects / long_job["id"] / "outputs").exists()  # no half file stored as an output
    assert [p.name for p in (objects / next_job["id"] / "outputs").iterdir()][0].endswith(".mp4")
    assert not any((tmp_path / "work").iterdir())  # the render's scratch folder is gone


def test_a_cancel_answered_by_another_replica_reaches_the_rendering_one(tmp_path):
    """Two apps on one database: the DELETE lands on the replica that is not rendering the job."""
    renderer = create_app(_settings(tmp_path, max_audio_s=120))
    front = create_app(_settings(tmp_path), start_workers=False)
    with TestClient(renderer) as rendering, TestClient(front) as other:
        job = other.post("/v1/jobs", files=_files(audio=_wav(60.0))).json()
        _wait_rendering(other, job["id"])
        body = other.delete(f"/v1/jobs/{job['id']}").json()
        assert body["status"] == "cancelled", body
        assert rendering.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_a_render_stopped_by_a_server_shutdown_is_queued_again_and_finished_by_the_next_one(tmp_path):
    settings = _settings(tmp_path, max_audio_s=120)
    with TestClient(create_app(settings)) as client:
        job = client.post("/v1/jobs", files=_files(audio=_wav(30.0))).json()
        _wait_rendering(client, job["id"])
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 20  # the shutdown stopped the render instead of waiting it out
    with TestClient(create_app(settings)) as restarted:
        assert restarted.get(f"/v1/jobs/{job['id']}").json()["status"] in ("queued", "uploading", "running")
        done = _wait_done(restarted, f"/v1/jobs/{job['id']}")
        assert done["status"] == "done", done
        assert [a["state"] for a in done["attempts"]] == ["lost", "done"]
        assert "server stopped during the render" in done["attempts"][0]["error"]
