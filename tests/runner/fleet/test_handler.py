"""The fleet handler's guard against working on one job twice in one process, without losing a retry."""

from __future__ import annotations

import pytest
from comfyui_sonic.runner.fleet.handler import ActiveJobs, HandlerConfig, HeldHere, JobHandler
from comfyui_sonic.runner.fleet.queues import JobMessage
from comfyui_sonic.runner.jobs import JobRecord
from comfyui_sonic.runner.secrets import HostSpec
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
