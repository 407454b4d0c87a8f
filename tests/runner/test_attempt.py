"""One attempt on its own: the executor against the fake ComfyUI, recorded in an in-memory journal.

No scheduler, no threads of ours: what the local batch and a fleet worker both get from
``AttemptExecutor.run`` - an outcome they apply their retry policy to.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from comfyui_sonic.runner import jobs as J
from comfyui_sonic.runner.attempt import AttemptConfig, AttemptExecutor
from comfyui_sonic.runner.batch import build_jobs
from comfyui_sonic.runner.client import ComfyClient
from comfyui_sonic.runner.journal import Journal
from comfyui_sonic.runner.workflow import load_workflow

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the fake server lives in tests/fake_comfy, imported from the repo root
    sys.path.insert(0, str(REPO))
from tests.fake_comfy import FakeComfy  # noqa: E402
from tests.fake_comfy.jobs import write_job_files  # noqa: E402

pytestmark = pytest.mark.timeout(60)


class Attempt:
    """One host, one journal, one executor; ``job()`` makes a job dispatched to the host."""

    def __init__(self, srv: FakeComfy, folder: Path, **config) -> None:
        self.srv = srv
        workflow, self.image, self.audio = write_job_files(folder, srv.url)
        self.template = load_workflow(workflow)
        self.journal = Journal(":memory:")
        self.events: list[tuple[str, str]] = []
        self.host_failures: list[str] = []
        self.executor = AttemptExecutor(
            ComfyClient(srv.url),
            srv.url,
            self.template,
            self.journal,
            AttemptConfig(out_dir=folder / "out", poll_interval=0.1, submit_settle=0.3, **config),
            events=lambda kind, job, data: self.events.append((kind, job.state)),
            on_host_failed=lambda host, exc: self.host_failures.append(exc.kind),
        )
        (folder / "out").mkdir()

    def job(self, audio: Path | None = None):
        row = {"id": "clip", "image": str(self.image), "audio": str(audio or self.audio)}
        (job,) = build_jobs([row], self.template, {})
        self.journal.add_jobs([job])
        self.journal.transition(job, J.UPLOADING, host=self.srv.url)
        return job


@pytest.fixture
def srv():
    with FakeComfy(run_seconds=0.05) as server:
        yield server


def test_a_successful_attempt_returns_done_with_a_verified_output(srv, tmp_path):
    import av

    a = Attempt(srv, tmp_path)
    job = a.job()
    outcome = a.executor.run(job)
    assert outcome.done and outcome.error is None
    (output,) = job.outputs
    assert Path(output).parent == tmp_path / "out"
    with av.open(output) as container:
        assert container.streams.video
    (attempt,) = a.journal.attempts(job.job_id)
    assert attempt["state"] == "done" and attempt["prompt_id"] == job.prompt_id
    assert job.state == J.DONE
    assert ("job", J.SUBMITTED) in a.events and a.events[-1] == ("job", J.DONE)


def test_the_prompt_id_comes_from_the_callers_function(srv, tmp_path):
    a = Attempt(srv, tmp_path)
    a.executor._prompt_id = lambda job: f"00000000-0000-4000-8000-{job.attempts + 1:012d}"
    job = a.job()
    assert a.executor.run(job).done
    assert job.prompt_id == "00000000-0000-4000-8000-000000000001"
    assert srv.state()["executions"] == [job.prompt_id]


def test_an_oom_returns_the_oom_class_and_leaves_the_retry_to_the_caller(srv, tmp_path):
    srv.set_faults(oom=1)
    a = Attempt(srv, tmp_path)
    job = a.job()
    outcome = a.executor.run(job)
    assert outcome.state == "failed" and outcome.error.kind == "oom" and outcome.error.retryable
    assert job.state in J.ON_HOST_STATES  # not ended here: the caller's policy decides (smaller tier, retry)
    assert job.outputs == []


def test_a_host_restart_mid_job_returns_lost(tmp_path):
    with FakeComfy(run_seconds=1.5) as srv:
        a = Attempt(srv, tmp_path, failover_grace=10.0)
        job = a.job()

        def restart_when_running() -> None:
            deadline = time.time() + 10
            while job.state != J.RUNNING and time.time() < deadline:
                time.sleep(0.02)
            srv.restart()

        threading.Thread(target=restart_when_running, daemon=True).start()
        outcome = a.executor.run(job)
    assert outcome.state == "lost", outcome
    assert outcome.error.kind == "restart" and outcome.error.retryable
    assert job.outputs == []


def test_a_bad_input_returns_dead_without_submitting(srv, tmp_path):
    a = Attempt(srv, tmp_path)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    job = a.job(audio=broken)
    outcome = a.executor.run(job)
    assert outcome.state == "dead" and not outcome.submitted
    assert outcome.error.kind == "input" and "broken.wav" in outcome.error.message
    assert srv.state()["executions"] == []
    (attempt,) = a.journal.attempts(job.job_id)  # counted, with its error, never POSTed
    assert attempt["state"] == "failed" and not attempt["prompt_id"]


def test_a_host_keeps_the_done_prompt_in_its_history_unless_told_to_forget_it(srv, tmp_path):
    kept = Attempt(srv, tmp_path / "kept")  # (the local batch: a desktop user may look at it)
    job = kept.job()
    assert kept.executor.run(job).done
    assert ComfyClient(srv.url).history(job.prompt_id) is not None

    forgot = Attempt(srv, tmp_path / "forgot", forget_history=True)  # (a fleet worker's render host)
    job = forgot.job()
    assert forgot.executor.run(job).done and job.state == J.DONE
    assert ComfyClient(srv.url).history(job.prompt_id) is None
    assert ComfyClient(srv.url).prompt_status(job.prompt_id) == "unknown"


def test_a_host_that_cannot_forget_still_leaves_the_job_done(srv, tmp_path):
    from comfyui_sonic.runner.host_errors import TransientHostError

    a = Attempt(srv, tmp_path, forget_history=True)

    def refuse(prompt_ids):
        raise TransientHostError(f"{srv.url}/history: HTTP 500", kind="http_5xx")

    a.executor.client.delete_history = refuse
    job = a.job()
    outcome = a.executor.run(job)
    assert outcome.done and job.state == J.DONE and job.outputs
