"""The embedded worker of `serve` under failure: a replica killed mid-render loses no job.

Each rendering job is held with a lease its worker renews; when a replica dies (kill -9, the
kernel's OOM killer) another replica's worker queues the job again and renders it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from comfyui_sonic.runner.api.local_worker import HOLDER_PREFIX, MAX_LOST, LocalWorker
from comfyui_sonic.runner.api.settings import ServeSettings
from comfyui_sonic.runner.jobs import DEAD, QUEUED, RUNNING, JobRecord
from comfyui_sonic.runner.storage import open_store
from comfyui_sonic.runner.store import JobStore, attempt_prompt_id
from comfyui_sonic.runner.store.outbox import Outbox
from sqlalchemy.exc import OperationalError

from tests.fake_comfy.process import free_port
from tests.runner.api.test_serve import FACE, _wav

REPO = Path(__file__).resolve().parents[3]
RUNNER = [sys.executable, "-m", "comfyui_sonic.runner"]


def _running_job(store: JobStore, holder: str, lease_s: float) -> JobRecord:
    """A job as a replica leaves it when it dies mid-render: running, held, its lease soon over."""
    spec = {"template": "sonic_lite_balanced", "webhook_url": "https://example.com/hook"}
    job = JobRecord(job_id="j1", row=1, spec=spec)
    store.add_jobs([job], owner="anonymous")
    store.take(job, holder, lease_s)
    store.start_attempt(job, "embedded", attempt_prompt_id(job.job_id, job.attempts + 1), "local", None)
    store.transition(job, RUNNING, attempt_state="running")
    return job


def _worker(store: JobStore, tmp_path: Path) -> LocalWorker:
    settings = ServeSettings(db_url=store.url, storage=str(tmp_path / "objects"), work_dir=tmp_path / "w")
    return LocalWorker(settings, store, open_store(settings.storage), Outbox(store))


def test_a_job_held_by_a_dead_replica_is_queued_again_once_its_lease_runs_out(store_url, tmp_path):
    store = JobStore(store_url)
    job = _running_job(store, f"{HOLDER_PREFIX}gone:1:x", lease_s=0.3)
    worker = _worker(store, tmp_path)
    assert worker.reap() == 0  # the holder may still be alive: leave it
    time.sleep(0.4)
    assert worker.reap() == 1
    again = store.job(job.job_id)
    assert again.state == QUEUED
    assert [a["state"] for a in store.attempts(job.job_id)] == ["lost"]
    assert worker.reap() == 0  # nothing left to do, and no second requeue
    store.close()


def test_a_job_whose_renders_keep_killing_their_server_ends_with_a_reason(store_url, tmp_path):
    store = JobStore(store_url)
    worker = _worker(store, tmp_path)
    job = _running_job(store, f"{HOLDER_PREFIX}gone:1:x", lease_s=0.01)
    for attempt in range(2, MAX_LOST + 1):
        time.sleep(0.05)
        assert worker.reap() == 1
        job = store.job(job.job_id)
        store.take(job, f"{HOLDER_PREFIX}gone:{attempt}:x", 0.01)
        store.start_attempt(job, "embedded", attempt_prompt_id(job.job_id, attempt), "local", None)
    time.sleep(0.05)
    assert worker.reap() == 1
    ended = store.job(job.job_id)
    assert ended.state == DEAD
    assert f"{MAX_LOST} times" in ended.error and "out of memory" in ended.error
    assert [a["state"] for a in store.attempts(job.job_id)] == ["lost"] * MAX_LOST
    assert [r["event_type"] for r in Outbox(store).rows()] == ["job.dead"]  # the client's webhook is told
    store.close()


def test_a_fleet_jobs_expired_lease_is_not_the_embedded_workers_business(store_url, tmp_path):
    store = JobStore(store_url)
    job = _running_job(store, "worker-7", lease_s=0.01)
    time.sleep(0.05)
    assert _worker(store, tmp_path).reap() == 0
    assert store.job(job.job_id).state == RUNNING
    store.close()


def _serve(port: int, db_url: str, root: Path) -> subprocess.Popen:
    argv = [*RUNNER, "serve", "--port", str(port), "--db", db_url, "--bucket", str(root / "objects")]
    argv += ["--no-auth", "--lease", "2"]
    log = (root / f"serve{port}.log").open("w")
    env = dict(os.environ, PYTHONPATH=str(REPO.parent), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError((root / f"serve{port}.log").read_text())


def test_killing_the_replica_that_renders_a_job_leaves_it_to_the_other(tmp_path, postgres_server):
    """Two embedded replicas on one PostgreSQL; the one rendering is killed with SIGKILL mid-render."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_server.url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    ports = [free_port(), free_port()]
    replicas = {port: _serve(port, postgres_server.url, tmp_path) for port in ports}
    store = JobStore(postgres_server.url)
    try:
        answer = requests.post(
            f"http://127.0.0.1:{ports[0]}/v1/jobs",
            files={"image": ("face.jpg", FACE), "audio": ("s.wav", _wav(8.0))},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        deadline = time.monotonic() + 120
        while store.job(job_id).state != RUNNING:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        holder, _ = store.holder(job_id)
        pid = int(holder.split(":")[2])
        victim = next(port for port, proc in replicas.items() if proc.pid == pid)
        os.kill(pid, signal.SIGKILL)
        replicas[victim].wait(10)
        survivor = next(port for port in ports if port != victim)
        deadline = time.monotonic() + 180
        while (body := requests.get(f"http://127.0.0.1:{survivor}/v1/jobs/{job_id}", timeout=10).json())[
            "status"
        ] not in ("done", "dead"):
            assert time.monotonic() < deadline, body
            time.sleep(0.3)
        assert body["status"] == "done", body
        assert [a["state"] for a in store.attempts(job_id)] == ["lost", "done"]
        url = body["outputs"][0]["url"]
        video = requests.get(
            url if url.startswith("http") else f"http://127.0.0.1:{survivor}{url}", timeout=30
        )
        assert video.status_code == 200 and len(video.content) > 10_000
    finally:
        store.close()
        for proc in replicas.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def _loop_alive(worker: LocalWorker) -> bool:
    return any(t.name == "sonic-local-worker" and t.is_alive() for t in worker._threads)


def test_the_worker_outlives_a_job_whose_end_it_could_not_record(tmp_path):
    # The database goes away mid-job, long enough that even the job's end fails. Before, the
    # worker thread died with it and the API went on queueing jobs no one would take.
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    store.add_jobs([JobRecord(job_id=f"j{i}", row=i, spec={"template": "x"}) for i in (1, 2)])
    settings = ServeSettings(
        db_url=store.url, storage=str(tmp_path / "objects"), work_dir=tmp_path / "w", lease_s=1.0
    )
    worker = LocalWorker(settings, store, open_store(settings.storage), Outbox(store))
    database_down = []
    recorded = store.transition

    def transition(*args, **kwargs):
        if database_down:
            raise OperationalError("UPDATE sonic_jobs", {}, Exception("server closed the connection"))
        return recorded(*args, **kwargs)

    def prompt(job, work):
        if not database_down and job.job_id == "j1" and job.attempts == 0 and not job.error:
            database_down.append(job.job_id)
            threading.Timer(0.5, database_down.clear).start()  # back half a second later
        raise OSError(f"cannot read the inputs of {job.job_id}")

    store.transition, worker._prompt = transition, prompt
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(j.final for j in store.jobs()):
            time.sleep(0.1)
        assert _loop_alive(worker)
        # j1 went back to the queue once its lease ran out (nothing renewed it) and ended like j2.
        assert {(j.job_id, j.state, j.error_kind) for j in store.jobs()} == {
            ("j1", DEAD, "internal"),
            ("j2", DEAD, "internal"),
        }
    finally:
        worker.stop(5)
        store.close()


def test_a_job_taken_when_the_work_folder_cannot_be_made_goes_back_to_the_queue(tmp_path, monkeypatch):
    # A full or read-only disk: the job was taken, then mkdtemp failed. Before, the job stayed
    # "uploading" forever, its lease renewed by a worker that had stopped working on it. The
    # job is not at fault: it goes back to the queue (for a replica that can) and this worker
    # pauses instead of failing every queued job in turn.
    import comfyui_sonic.runner.api.local_worker as local_worker

    monkeypatch.setattr(local_worker, "WORK_DIR_RETRY_S", 30.0)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    store.add_jobs([JobRecord(job_id=f"j{i}", row=i, spec={"template": "x"}) for i in (1, 2)])
    (tmp_path / "file").write_text("not a folder")
    settings = ServeSettings(
        db_url=store.url, storage=str(tmp_path / "objects"), work_dir=tmp_path / "file" / "w", lease_s=1.0
    )
    worker = LocalWorker(settings, store, open_store(settings.storage), Outbox(store)).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(j.error for j in store.jobs()):
            time.sleep(0.1)
        time.sleep(0.5)
        jobs = {j.job_id: j for j in store.jobs()}
        assert {j.state for j in jobs.values()} == {QUEUED} and _loop_alive(worker)
        tried = [j for j in jobs.values() if j.error]
        assert len(tried) == 1 and "could not make its work folder" in tried[0].error  # one, then a pause
        assert worker._current is None
    finally:
        worker.stop(5)
        store.close()
