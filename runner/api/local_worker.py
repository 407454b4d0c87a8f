"""The in-process worker of the embedded default: runs queued jobs with the embedded executor.

``serve`` with no broker runs this thread, so a laptop needs no RabbitMQ and no ComfyUI
host: it takes the most urgent queued job (compare-and-set, so several replicas or
threads never take the same one), renders it in this process on the lite backend (or
sonic with weights), stores the outputs, records the end and queues the webhook.

A job is held with a lease the worker renews while it renders. A replica that dies
(kill -9, the kernel's OOM killer, a lost machine) stops renewing; any other replica's
worker then queues the job again, so a job is never left "running" with nobody running
it. A job whose renders kill their server again and again is ended after ``MAX_LOST``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from ..jobs import DEAD, DONE, FETCHING, QUEUED, RUNNING, JobRecord
from ..metrics import observe_job_end
from ..storage import ObjectStore, job_key
from ..store import AttemptTaken, JobStore, StaleJob, attempt_prompt_id
from ..store.outbox import Outbox
from ..store.progress import ProgressRecorder
from ..workflow import apply_params, load_workflow
from .settings import ServeSettings

log = logging.getLogger(__name__)
HOST = "embedded"
#: Holder names of the embedded workers start with this (the fleet's reaper has its own kind).
HOLDER_PREFIX = "embedded:"
#: Renders of one job that ended with their server gone before the job is given up.
MAX_LOST = 3
#: A work folder that cannot be made: how long the worker waits before it takes a job again.
WORK_DIR_RETRY_S = 5.0
#: The embedded executor sets process-wide state (the nodes' output folder and progress hook),
#: so one process renders one job at a time; run more `serve` replicas to use more cores.
_RENDER_LOCK = threading.Lock()


class LocalWorker:
    """One thread that renders queued jobs one at a time."""

    def __init__(
        self, settings: ServeSettings, store: JobStore, storage: ObjectStore, outbox: Outbox, metrics=None
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.outbox = outbox
        self.metrics = metrics
        self.name = f"{HOLDER_PREFIX}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._cancel: set[str] = set()
        self._lost: set[str] = set()  # jobs whose lease another replica found expired
        self._current: str | None = None
        self._pause_until = 0.0  # (monotonic) no job is taken before then: see WORK_DIR_RETRY_S
        self._threads: list[threading.Thread] = []

    def start(self) -> LocalWorker:
        for target, name in ((self._loop, "sonic-local-worker"), (self._keep, "sonic-local-keeper")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _keep(self) -> None:
        """Renew the running job's lease three times per lease; once per lease, queue again the jobs
        of replicas that stopped renewing theirs."""
        lease = self.settings.lease_s
        last_reap = 0.0
        while not self._stop.wait(lease / 3):
            try:
                self._renew()
                if time.monotonic() - last_reap >= lease:
                    last_reap = time.monotonic()
                    self.reap()
            except Exception:  # noqa: BLE001 - a database blip must not end the keeper
                log.warning("local worker: cannot renew or reap leases; retrying", exc_info=True)

    def _renew(self) -> None:
        current = self._current
        if current is not None and not self.store.renew(self.name, [current], self.settings.lease_s):
            if current == self._current:
                log.warning("job %s: its lease was taken by another replica; stopping its render", current)
                self._lost.add(current)

    def reap(self) -> int:
        """Queue again (or end) the embedded jobs whose holder's lease ran out; how many it did.

        The holder is gone (or so stuck that it stopped renewing): its render no longer counts.
        ``mark_reaped`` makes exactly one replica act on each such job.
        """
        now, done = time.time(), 0
        for job, _batch in self.store.expired_leases(now, holder_prefix=HOLDER_PREFIX):
            if not self.store.mark_reaped(job, now, hold_s=self.settings.lease_s):
                continue
            try:
                self._requeue_lost(job)
                done += 1
            except StaleJob:
                continue  # its holder recorded an end meanwhile
        return done

    def _requeue_lost(self, job: JobRecord) -> None:
        lost = 1 + sum(1 for a in self.store.attempts(job.job_id) if a["state"] == "lost")
        why = "the server rendering it stopped (its lease ran out)"
        if lost >= MAX_LOST:
            self._end(
                job,
                DEAD,
                f"{why} {lost} times; not tried again (is a render killing the server, e.g. out of memory?)",
                "internal",
                attempt_state="lost",
            )
            return
        self._requeue(job, f"{why}; queued again")

    def interrupt(self, job: JobRecord) -> None:
        """Cancel a running job: its render stops at the next step and the job ends cancelled."""
        self._cancel.add(job.job_id)

    def _cancel_check(self, job: JobRecord, every_s: float = 0.5):
        """The render's ``cancel()``: this process's own DELETE at once, another replica's via the store."""
        last = [0.0]

        def cancelled() -> bool:
            if job.job_id in self._cancel or job.job_id in self._lost:
                return True
            now = time.monotonic()
            if now - last[0] >= every_s:
                last[0] = now
                try:
                    if job.job_id in self.store.cancel_requested([job.job_id]):
                        self._cancel.add(job.job_id)
                except Exception:  # noqa: BLE001 - a database blip must not stop the render
                    log.warning("job %s: cannot check for a cancel request", job.job_id)
            return job.job_id in self._cancel

        return cancelled

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._stop.wait(max(0.0, self._pause_until - time.monotonic())):
                break
            try:
                job = self._take()
            except Exception:  # noqa: BLE001 - a database blip must not end the worker
                log.exception("local worker: cannot read the job store; retrying")
                job = None
            if job is None:
                self._stop.wait(0.2)
                continue
            try:
                self._run(job)
            except Exception:  # noqa: BLE001 - the worker outlives a job it could not settle
                # (The store went away even for the job's end.) Its lease is no longer renewed:
                # once it runs out, a replica's reaper queues the job again.
                log.exception(
                    "local worker: job %s could not be settled; it will be queued again", job.job_id
                )
                self._stop.wait(1.0)

    def _take(self) -> JobRecord | None:
        queued = self.store.jobs([QUEUED], limit=200, by_priority=True)  # (sorted in SQL, before the limit)
        for job in queued:
            try:
                self.store.take(
                    job, self.name, self.settings.lease_s, queued_seconds=time.time() - job.created_at
                )
                self._current = job.job_id
                return job
            except StaleJob:
                continue  # another worker took it (or it was cancelled)
        return None

    def _run(self, job: JobRecord) -> None:
        work: Path | None = None
        try:
            try:
                work = Path(tempfile.mkdtemp(prefix=f"sonic-{job.job_id[:8]}-", dir=self._work_dir()))
            except OSError as exc:
                # This server's disk (full, read-only), not the job: back to the queue for a replica
                # that can render it, and a pause here instead of failing every queued job at once.
                why = f"the server could not make its work folder ({exc.strerror or exc}); queued again"
                log.error("local worker: job %s: %s", job.job_id, why)
                self._requeue(job, why)
                self._pause_until = time.monotonic() + WORK_DIR_RETRY_S
                return
            prompt = self._prompt(job, work)
            pid = attempt_prompt_id(job.job_id, job.attempts + 1)
            self.store.start_attempt(job, HOST, pid, "local", None)
            self.store.transition(job, RUNNING, attempt_state="running", started_at=time.time())
            self.store.add_event(job.job_id, "state", {"state": RUNNING})
            from .. import embedded

            cancelled = self._cancel_check(job)
            files = None
            if self._acquire_render():
                try:
                    files = embedded.run_embedded(
                        prompt,
                        work / "out",
                        self._progress(job),
                        cancel=lambda: cancelled() or self._stop.is_set(),
                    )
                except embedded.RenderCancelled:
                    files = None
                finally:
                    _RENDER_LOCK.release()
            run_s = time.time() - (job.started_at or time.time())
            if job.job_id in self._lost:
                log.warning("job %s was queued again by another replica; leaving it", job.job_id)
                return
            if files is None and self._stop.is_set() and not self._client_cancelled(job):
                self._requeue(job, "the server stopped during the render; the job was queued again")
                return
            if files is None or cancelled():
                why = "while it was rendering" if files is None else "as it finished rendering"
                self._end(job, DEAD, f"cancelled by the client {why}", "cancelled", run_s=run_s)
                return
            self.store.transition(job, FETCHING, attempt_state="fetching", run_seconds=run_s)
            keys = []
            for path in files:
                key = job_key(job.job_id, "outputs", Path(path).name)
                self.storage.put_file(key, Path(path), "video/mp4" if str(path).endswith(".mp4") else None)
                keys.append(key)
            self._end(job, DONE, outputs=keys, run_s=run_s)
        except (AttemptTaken, StaleJob):
            log.warning("job %s was taken over elsewhere; leaving it", job.job_id)
        except Exception as exc:  # noqa: BLE001 - the job's own failure, told in one line
            from ..host_errors import ENGINE_ERROR_NAMES

            if job.final:  # it ended; what failed came after (its event, its webhook row)
                log.exception("job %s: ended %s, but its follow-up failed", job.job_id, job.state)
                return
            name = type(exc).__name__
            kind = "input" if name in ENGINE_ERROR_NAMES or name == "WorkflowError" else "internal"
            if kind == "internal":
                log.exception("job %s: unexpected error", job.job_id)
            message = str(exc).splitlines()[0] if str(exc) else name
            self._end(
                job,
                DEAD,
                message if kind == "input" else f"internal error ({name}); see the server log",
                kind,
            )
        finally:
            self._current = None
            self._cancel.discard(job.job_id)
            self._lost.discard(job.job_id)
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)

    def _acquire_render(self) -> bool:
        """Take the process's render slot, unless the worker is told to stop while it waits."""
        while not self._stop.is_set():
            if _RENDER_LOCK.acquire(timeout=0.5):
                return True
        return False

    def _client_cancelled(self, job: JobRecord) -> bool:
        try:
            return job.job_id in self._cancel or job.job_id in self.store.cancel_requested([job.job_id])
        except Exception:  # noqa: BLE001 - then it was not asked for as far as we can tell
            return job.job_id in self._cancel

    def _requeue(self, job: JobRecord, why: str) -> None:
        """A render that no longer runs (this server is stopping, or the one running it died) goes
        back to the queue for the next worker, its attempt "lost", instead of being left "running"
        with no one running it.
        """
        self.store.transition(job, QUEUED, attempt_state="lost", error=why, error_kind="interrupted")
        self.store.add_event(job.job_id, "state", {"state": QUEUED, "why": why})

    def _work_dir(self) -> Path:
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.work_dir

    def _prompt(self, job: JobRecord, work: Path) -> dict:
        spec = job.spec
        image = self.storage.get_file(spec["image"], work / Path(spec["image"]).name)
        template = spec.get("workflow") or load_workflow(
            self.settings.templates_dir / f"{spec['template']}_api.json"
        )  # (a registered template's workflow is stored in the job itself)
        if "audio" not in spec:  # a text job: the duration follows the synthesised speech
            from ..text_jobs import text_params

            return apply_params(
                template,
                {
                    **text_params(template, spec.get("params", {}), spec["text"]),
                    "image": str(image),
                },
            )
        audio = self.storage.get_file(spec["audio"], work / Path(spec["audio"]).name)
        params = {**spec.get("params", {}), "image": str(image), "audio": str(audio)}
        try:
            from ..workflow import get_param

            get_param(template, "duration")
            params["duration"] = spec["duration"]
        except Exception:  # noqa: BLE001 - a template without a duration input
            pass
        return apply_params(template, params)

    def _progress(self, job: JobRecord):
        recorder = ProgressRecorder(self.store, job.job_id)

        def sink(event: dict) -> None:
            if event.get("event") == "progress":
                recorder.record(event.get("value"), event.get("max"), node=event.get("title"))

        return sink

    def _end(
        self,
        job: JobRecord,
        state: str,
        error: str | None = None,
        kind: str | None = None,
        outputs: list[str] | None = None,
        run_s: float | None = None,
        attempt_state: str | None = None,
    ) -> None:
        now = time.time()
        changes: dict = {"finished_at": now}
        if outputs is not None:
            changes["outputs"] = outputs
        if error is not None:
            changes.update(error=error, error_kind=kind)
        if run_s is not None:
            changes["run_seconds"] = run_s
        ended = "cancelled" if kind == "cancelled" else ("done" if state == DONE else "dead")
        attempt_state = attempt_state or (ended if job.attempts else None)
        self.store.transition(job, state, attempt_state=attempt_state, **changes)
        status = "cancelled" if kind == "cancelled" else state
        self.store.add_event(job.job_id, "state", {"state": status})
        if self.metrics is not None:
            observe_job_end(self.metrics, job)
        self.outbox.job_ended(job, status)
