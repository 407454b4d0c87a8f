"""The fleet handler: one job twice in one process never, a retry never lost, a failure never endless."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from comfyui_sonic.runner.fleet.handler import ActiveJobs, HandlerConfig, HeldHere, JobHandler
from comfyui_sonic.runner.fleet.queues import JobMessage
from comfyui_sonic.runner.host_errors import TransientHostError
from comfyui_sonic.runner.jobs import JobRecord
from comfyui_sonic.runner.retry import RetryPolicy
from comfyui_sonic.runner.secrets import HostSpec
from comfyui_sonic.runner.storage import StorageError
from comfyui_sonic.runner.store import JobStore


def test_a_retry_that_arrives_while_its_failed_attempt_winds_up_here_goes_back_to_the_queue(tmp_path):
    """The race the fault-injection load run found: an OOM'd attempt publishes its retry to a lower
    pool, this same worker's consumer of that pool gets it at once, and the first handler has not
    let go of the job yet. Acknowledged and dropped, the job stayed "failed" forever; requeued
    (HeldHere: the worker rejects it with requeue), it is taken once the first handler is done."""
    with JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}") as store:
        store.add_jobs([JobRecord(job_id="j1", row=0, priority=1, spec={})])
        active = ActiveJobs()
        config = HandlerConfig(worker="w1", work_dir=tmp_path / "work", templates_dir=tmp_path)
        handler = JobHandler(
            store,
            None,
            HostSpec("http://127.0.0.1:9"),
            None,
            config,
            active=active,
            client_for=lambda url: None,
        )
        ran: list[str] = []
        handler._handle = lambda job, work, redelivered: ran.append(job.state)
        job = store.job("j1")
        store.transition(job, "uploading")
        store.transition(job, "failed", error="out of memory", error_kind="oom")
        active.add("j1")  # the first attempt's handler still holds the job
        with pytest.raises(HeldHere, match="still being handled"):
            handler.handle(JobMessage(job_id="j1", batch=""))
        assert ran == []
        active.discard("j1")  # it let go: the requeued message is handled normally
        handler.handle(JobMessage(job_id="j1", batch=""))
        assert ran == ["failed"]


TEMPLATES = Path(__file__).resolve().parents[3] / "workflows" / "api"


class Published:
    """The publisher's side of a retry: which jobs went back to the queue, and when."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def publish(self, job, pool=None, delay=0.0) -> None:
        self.delays.append(delay)


def _handler(store, tmp_path, *, client=None, storage=None, ended=None):
    config = HandlerConfig(
        worker="w1",
        work_dir=tmp_path / "work",
        templates_dir=TEMPLATES,
        policy=RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_cap=0.0),
    )
    published = Published()
    handler = JobHandler(
        store, published, HostSpec("http://127.0.0.1:9"), client, config,
        active=ActiveJobs(), client_for=lambda url: None, storage=storage,
        on_job_end=(ended.append if ended is not None else None),
    )  # fmt: skip
    return handler, published


def _run_until_final(handler, store, job_id: str, limit: int = 10):
    for _ in range(limit):
        handler.handle(JobMessage(job_id=job_id, batch=""))
        job = store.job(job_id)
        if job.final:
            return job
    raise AssertionError(f"job {job_id} still {job.state} after {limit} deliveries")


def test_a_host_that_refuses_every_upload_ends_the_job_after_its_attempts(tmp_path):
    # It answers its probe, so it keeps getting jobs; each failed upload is an attempt that counts.
    class RefusesUploads:
        def upload(self, path, subfolder="sonic"):
            raise TransientHostError("http://h/upload/image: HTTP 500 (disk full)", kind="http_5xx")

    image, audio = tmp_path / "face.png", tmp_path / "speech.wav"
    image.write_bytes(b"png")
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000)
    spec = {"template": "sonic_lite_fast", "image": str(image), "audio": str(audio), "out_dir": str(tmp_path)}
    with JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}") as store:
        store.add_jobs([JobRecord(job_id="j1", row=0, spec=spec)])
        ended: list = []
        handler, published = _handler(store, tmp_path, client=RefusesUploads(), ended=ended)
        job = _run_until_final(handler, store, "j1")
        assert (job.state, job.error_kind, job.attempts) == ("dead", "http_5xx", 3)
        assert len(published.delays) == 2 and [j.job_id for j in ended] == ["j1"]
        attempts = store.attempts("j1")
        assert [(a["state"], a["prompt_id"]) for a in attempts] == [("failed", "")] * 3


def test_an_object_store_hiccup_fetching_inputs_is_retried_not_fatal(tmp_path):
    class SlowDownOnce:
        calls = 0

        def get_file(self, key, dest):
            SlowDownOnce.calls += 1
            if SlowDownOnce.calls == 1:
                raise StorageError("s3://renders: cannot read jobs/j1/inputs/image.png (SlowDown)")
            raise StorageError("s3://renders: cannot read jobs/j1/inputs/image.png (no such object)")

    spec = {
        "template": "sonic_lite_fast",
        "image": "jobs/j1/inputs/image.png",
        "audio": "jobs/j1/inputs/a.wav",
    }
    with JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}") as store:
        store.add_jobs([JobRecord(job_id="j1", row=0, spec=spec)])
        handler, published = _handler(store, tmp_path, storage=SlowDownOnce())
        handler.handle(JobMessage(job_id="j1", batch=""))
        job = store.job("j1")
        assert (job.state, job.error_kind, job.attempts) == ("failed", "storage", 1) and published.delays
        job = _run_until_final(handler, store, "j1")  # a store that keeps failing: bounded too
        assert (job.state, job.attempts) == ("dead", 3) and "no such object" in job.error


def test_a_cancel_that_came_while_the_attempt_was_failing_stops_the_retry(tmp_path):
    # The API saw the job running and recorded the request; the attempt then failed and its
    # retry was published. The retry must not run the job the client cancelled.
    with JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}") as store:
        store.add_jobs([JobRecord(job_id="j1", row=0, spec={"template": "sonic_lite_fast"})])
        job = store.job("j1")
        store.transition(job, "uploading")
        store.request_cancel("j1")
        store.transition(job, "failed", error="HTTP 502", error_kind="http_5xx")
        ended: list = []
        handler, published = _handler(store, tmp_path, ended=ended)
        handler.handle(JobMessage(job_id="j1", batch=""))
        job = store.job("j1")
        assert (job.state, job.error_kind) == ("dead", "cancelled") and [j.job_id for j in ended] == ["j1"]
        assert published.delays == [] and store.attempts("j1") == []


def test_a_worker_whose_disk_is_full_hands_the_job_back_uncounted_and_stops_for_its_host(tmp_path):
    # Every job would fail the same way here: the job goes to another worker with its attempts
    # intact, and this worker stops taking jobs (HostRefused) instead of burning them.
    from comfyui_sonic.runner.client import LocalDiskError
    from comfyui_sonic.runner.fleet.handler import HostRefused

    class DiskFull:
        def run(self, job):
            raise LocalDiskError(
                "cannot write j1.mp4 to /work/outputs on this machine (No space left on device)"
            )

    with JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}") as store:
        store.add_jobs([JobRecord(job_id="j1", row=0, spec={"template": "sonic_lite_fast"})])
        handler, published = _handler(store, tmp_path)
        handler._executor = lambda host, job, work: DiskFull()
        with pytest.raises(HostRefused, match="cannot store outputs: .*No space left on device"):
            handler.handle(JobMessage(job_id="j1", batch=""))
        job = store.job("j1")
        assert (job.state, job.error_kind, job.attempts) == ("failed", "host_config", 0)
        assert published.delays == [0.0]
