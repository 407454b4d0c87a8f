"""`serve --broker`: the HTTP API publishes jobs to RabbitMQ and `sonic-runner worker`s render them.

The API runs in this process (FastAPI's TestClient), the worker is a real process feeding a
fake ComfyUI host, and both share a PostgreSQL job store and an object store folder.
"""

from __future__ import annotations

import time

import pytest
from comfyui_sonic.runner.api.app import create_app
from comfyui_sonic.runner.api.settings import ServeSettings
from fastapi.testclient import TestClient

from tests.fake_comfy import FakeComfy
from tests.runner.api.test_serve import _files, _wait_done

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def host(tmp_path):
    with FakeComfy(tmp_path / "host", run_seconds=0.3) as server:
        yield server


def _app(fleet, tmp_path, pools: str | None = None):
    settings = ServeSettings(
        db_url=fleet.db_url,
        storage=str(tmp_path / "objects"),
        broker_url=fleet.broker_url,
        pools=pools,
        work_dir=tmp_path / "work",
        auth=False,
    )
    return create_app(settings)


def test_a_job_posted_to_the_api_is_rendered_by_a_worker_and_served_back(fleet, host, tmp_path):
    import av

    fleet.worker(host.url, extra=("--bucket", str(tmp_path / "objects")))
    with TestClient(_app(fleet, tmp_path)) as client:
        answer = client.post("/v1/jobs", files=_files(), data={"tier": "fast", "priority": "P0"})
        assert answer.status_code == 202, answer.text
        done = _wait_done(client, answer.json()["status_url"].replace("http://testserver", ""))
        assert done["status"] == "done", done
        assert [a["host"] for a in done["attempts"]] == [host.url]
        (output,) = done["outputs"]
        video = client.get(output["url"].replace("http://testserver", ""))
        assert video.status_code == 200
    (tmp_path / "got.mp4").write_bytes(video.content)
    with av.open(str(tmp_path / "got.mp4")) as container:
        assert next(container.decode(video=0)) is not None
    assert len(host.executions) == 1


def test_serve_publishes_to_the_pools_its_workers_consume(fleet, host, tmp_path):
    # Workers on --pools 640: serve must publish there too (to its default 768 the job sat in a
    # queue no worker read), and refuse a template no pool serves instead of queueing it forever.
    fleet.worker(host.url, extra=("--bucket", str(tmp_path / "objects"), "--pools", "640"))
    with TestClient(_app(fleet, tmp_path, pools="640")) as client:
        answer = client.post("/v1/jobs", files=_files(), data={"tier": "fast"})  # 512: pool 640
        assert answer.status_code == 202, answer.text
        done = _wait_done(client, answer.json()["status_url"].replace("http://testserver", ""))
        assert done["status"] == "done", done
        refused = client.post("/v1/jobs", files=_files(), data={"template": "sonic_lite_hq"})  # 768
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "no_pool" and "above the largest pool 640" in error["message"], error
    assert len(host.executions) == 1


def test_cancelling_a_running_job_stops_it_on_its_host(fleet, tmp_path):
    with FakeComfy(tmp_path / "slow", run_seconds=30.0) as slow:
        fleet.worker(slow.url, extra=("--bucket", str(tmp_path / "objects")))
        with TestClient(_app(fleet, tmp_path)) as client:
            job = client.post("/v1/jobs", files=_files(), data={"tier": "fast"}).json()
            url = job["status_url"].replace("http://testserver", "")
            deadline = time.monotonic() + 60
            while client.get(url).json()["status"] != "running":
                assert time.monotonic() < deadline, client.get(url).json()
                time.sleep(0.2)
            started = time.monotonic()
            assert client.delete(url).status_code == 200
            ended = _wait_done(client, url, timeout=60)
        assert ended["status"] == "cancelled", ended
        assert time.monotonic() - started < 20  # interrupted on the host, not run to its end


def test_with_the_broker_down_serve_does_not_start(fleet, tmp_path):
    from comfyui_sonic.runner.fleet.errors import BrokerError

    settings = ServeSettings(
        db_url=fleet.db_url,
        storage=str(tmp_path / "objects"),
        broker_url="amqp://guest:guest@127.0.0.1:9//",
        auth=False,
    )
    with pytest.raises(BrokerError, match="is unreachable"):
        create_app(settings)
