"""What a fleet worker does with one delivered message: the job's next step, exactly once.

A broker delivers at least once, so a message is a reason to look at the job, never an
order to run it. The job store is the truth:
- a finished job, or one another live worker holds (its lease is fresh), needs nothing:
  the message is acknowledged and dropped (the holder's own message is still unacked, so
  nothing is lost if the holder dies);
- a waiting job (queued, or failed and due for its retry) is taken with a compare-and-set
  and run through the shared ``AttemptExecutor``;
- an in-flight job whose holder stopped renewing its lease (killed, or cut off) is taken
  over: its host is asked about the attempt's prompt_id first (derived from job id +
  attempt number and recorded before submit), and the attempt is followed or fetched;
  only a host that does not know it leads to a new attempt.

The retry policy is the local batch's (``RetryPolicy``): transient failures come back
through a delay queue with backoff + jitter, an OOM one pool lower, bad input is dead at
once with the host's message. This module knows nothing of AMQP channels or threads.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import jobs as J
from ..attempt import AttemptConfig, AttemptExecutor, AttemptOutcome
from ..host_errors import (
    HostConfigError,
    HostError,
    JobInputError,
    TransientHostError,
    ValidationHostError,
    one_line,
)
from ..jobs import JobRecord
from ..lru import LruCache
from ..retry import RetryPolicy
from ..secrets import HostSpec
from ..store import JobStore, StaleJob, attempt_prompt_id
from ..store.progress import ProgressRecorder
from .queues import JobMessage, MessageError, PoolError, pool_for

log = logging.getLogger(__name__)


class HeldHere(Exception):
    """The message's job is still being worked on in this process: requeue the message."""


class HostRefused(Exception):
    """The host cannot run this job's workflow (nodes or weights missing): stop consuming for it."""


@dataclass
class HandlerConfig:
    """A worker's settings for the jobs it runs (the CLI fills it)."""

    worker: str  # this worker's name in the job store (host name + pid by default)
    work_dir: Path
    templates_dir: Path
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    lease_s: float = 30.0
    pools: tuple[int, ...] = (512, 768, 1024)
    timeout: float = 3600.0
    poll_interval: float = 2.0
    submit_settle: float = 3.0
    failover_grace: float = 30.0
    verify_outputs: bool = True
    forget_history: bool = True  # a render host's ComfyUI keeps no history of done jobs


class ActiveJobs:
    """The jobs this worker process holds right now (lease renewal, redelivery guard)."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, job_id: str) -> bool:
        """False if the job is already being worked on here (a redelivered duplicate)."""
        with self._lock:
            if job_id in self._ids:
                return False
            self._ids.add(job_id)
            return True

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._ids.discard(job_id)

    def snapshot(self) -> list[str]:
        with self._lock:
            return sorted(self._ids)


class JobHandler:
    """Handles messages of one host's subscription (one ComfyUI host, its client)."""

    def __init__(
        self,
        store: JobStore,
        publisher: Any,
        host: HostSpec,
        client: Any,
        config: HandlerConfig,
        *,
        active: ActiveJobs,
        client_for: Callable[[str], Any],
        storage: Any = None,
        on_job_end: Callable[[JobRecord], None] | None = None,
        on_host_ok: Callable[[str], None] | None = None,
        on_host_failed: Callable[[str, HostError], None] | None = None,
        metrics: Any = None,
    ) -> None:
        self.metrics = metrics  # runner.metrics.Metrics (retries, OOM downgrades), or None
        self.store = store
        self.publisher = publisher
        self.host = host
        self.client = client
        self.config = config
        self.active = active
        self._client_for = client_for
        self.storage = storage
        self._on_job_end = on_job_end or (lambda job: None)
        self._on_host_ok = on_host_ok
        self._on_host_failed = on_host_failed
        self._durations: LruCache[str, float] = LruCache()  # per job's speech file: bounded
        # Per workflow an API client stored (each job may carry its own): bounded like the rest.
        self._templates: LruCache[str, dict] = LruCache(64)

    # ------------------------------------------------------------------ entry point
    def handle(self, message: JobMessage, redelivered: bool = False) -> None:
        """Take the job's next step. Returns when the message may be acknowledged.

        ``redelivered``: the broker sent it before (its consumer's connection dropped): the
        job's holder may have just died, so its lease is waited out before the job is left.

        Raises MessageError (dead-letter the message), HostRefused (requeued; stop consuming
        for this host), HeldHere (requeue: this process still works on the job) or StoreError /
        broker errors (requeue and try again later).
        """
        job = self.store.job(message.job_id)
        if job is None:
            raise MessageError(f"job {message.job_id} is not in the job store {self.store.url}")
        if job.final:
            if redelivered:
                # Its worker may have died between recording the end and acknowledging: do the
                # end's follow-up again (the webhook outbox keeps one delivery per job and event).
                self._on_job_end(job)
            return
        if not self.active.add(job.job_id):
            # Still held here. Not always a duplicate to drop: an OOM'd attempt's retry, published
            # to a lower pool, can reach this process's consumer of that pool before the attempt's
            # handler has let go of the job; dropped, that retry was lost and the job stayed
            # "failed" for good. Back to the queue: once the holder is done it is taken normally.
            raise HeldHere(f"job {job.job_id} is still being handled in this process")
        work = Path(self.config.work_dir) / f"{job.job_id}-{os.getpid()}"
        try:
            self._handle(job, work, redelivered)
        except StaleJob as exc:
            log.info("job %s: %s; another worker has it now", job.job_id, exc)
        finally:
            self.active.discard(job.job_id)
            shutil.rmtree(work, ignore_errors=True)

    def _handle(self, job: JobRecord, work: Path, redelivered: bool) -> None:
        worker, lease = self.config.worker, self.config.lease_s
        if job.state in J.IN_FLIGHT_STATES:
            if not self._hold(job, redelivered):
                return  # its holder is alive and follows it
            outcome = self._on_this_disk(job, lambda: self._resume(job, work))
            if outcome is not None:
                self._settle(job, outcome)
                return
        # A cancel of a waiting job ends it at once in the API; of a running one, when its attempt
        # ends (_settle). One that came as the attempt was failing (the API still saw it running,
        # _settle had already looked), or for a taken-over job whose host lost it, is found here,
        # before the job runs again.
        if (job.state == J.FAILED or job.attempts) and self.store.cancel_requested([job.job_id]):
            self._end(job, J.DEAD, "cancelled by the client", "cancelled")
            return
        first = job.attempts == 0 and job.state == J.QUEUED
        changes = {"queued_seconds": time.time() - job.created_at} if first else {}
        self.store.take(job, worker, lease, host=self.host.safe_url, **changes)
        try:
            self._materialise_inputs(job, work)
            executor = self._executor(self.host.safe_url, job, work)
        except HostError as exc:
            # An object store that answered 503 is worth another try; counted as an attempt, the
            # policy's limit ends a failure that lasts (a missing input object too).
            self.store.record_unsent_attempt(job, self.host.safe_url, exc.message, exc.kind)
            state = "failed" if exc.retryable else "dead"
            self._settle(job, AttemptOutcome(state, exc, host=self.host.safe_url, submitted=False))
            return
        self._settle(job, self._on_this_disk(job, lambda: executor.run(job)))

    def _on_this_disk(
        self, job: JobRecord, attempt: Callable[[], AttemptOutcome | None]
    ) -> AttemptOutcome | None:
        """Run ``attempt``; this worker's disk failing hands the job back, uncounted, and stops
        the worker taking jobs for this host (every job would fail the same way here)."""
        from ..client import LocalDiskError

        try:
            return attempt()
        except LocalDiskError as exc:
            self._hand_back(job, HostConfigError(f"worker {self.config.worker}: {exc}"))
            raise HostRefused(f"worker {self.config.worker} cannot store outputs: {exc}") from None

    # ------------------------------------------------------------------ resume a held job
    def _hold(self, job: JobRecord, redelivered: bool) -> bool:
        """Take over an in-flight job whose holder is gone; False while a live holder has it."""
        lease = self.config.lease_s
        deadline = time.time() + (1.5 * lease if redelivered else 0.0)
        while True:
            if self.store.take_over(job, self.config.worker, lease):
                return True
            if time.time() >= deadline:
                return False
            time.sleep(min(1.0, lease / 3))
            fresh = self.store.job(job.job_id)
            if fresh is None or (fresh.state, fresh.attempts) != (job.state, job.attempts):
                return False  # it moved on: its holder is alive

    def _resume(self, job: JobRecord, work: Path) -> AttemptOutcome | None:
        """Ask the job's host about its attempt; None: nothing of it can run, run it anew now."""
        record = self.store.attempt(job.job_id, job.attempts) if job.attempts else None
        if job.state == J.UPLOADING or record is None:
            self.store.transition(job, J.QUEUED)  # nothing was POSTed yet
            return None
        host = job.host or record["host"]
        lost = TransientHostError(f"the worker that held job {job.job_id} stopped", kind="restart")
        try:
            executor = self._executor(host, job, work)  # (its outputs, too, go with the job's folder)
        except HostError as exc:
            return AttemptOutcome("failed", exc, host=host)
        outcome = executor.recover(job, record.get("client_id") or "", lost)
        if outcome.state == "lost" and outcome.error is None:
            self.store.transition(job, J.QUEUED, attempt_state="lost", error=None, error_kind=None)
            return None
        return outcome

    # ------------------------------------------------------------------ outcomes
    def _settle(self, job: JobRecord, outcome: AttemptOutcome) -> None:
        if outcome.done:
            self._finished(job)
            return
        exc = outcome.error or TransientHostError("the attempt was lost", kind="restart")
        if self._stale_upload(job, outcome, exc):
            return
        if isinstance(exc, HostConfigError):
            self._hand_back(job, exc)
            raise HostRefused(f"host {self.host.label} cannot run job {job.job_id}: {exc.message}")
        a_state = outcome.state if outcome.state in ("lost", "abandoned", "dead") else "failed"
        in_flight = job.state in J.IN_FLIGHT_STATES and job.state != J.UPLOADING
        if job.job_id in self.store.cancel_requested([job.job_id]):
            self._end(job, J.DEAD, "cancelled by the client", "cancelled", a_state if in_flight else None)
            return
        free = self.store.attempt_counts("host_config", job.job_id).get(job.job_id, 0)
        decision = self.config.policy.decide(
            attempts=max(1, job.attempts - free),
            kind=exc.kind,
            retryable=exc.retryable and outcome.state != "dead",
            message=exc.message,
            resolution=job.resolution,
        )
        notes = [*job.notes, decision.note] if decision.note else job.notes
        if decision.retry and self.metrics is not None:
            self.metrics.retries.labels(reason=exc.kind).inc()
            if exc.kind == "oom":
                self.metrics.oom_downgrades.inc()
        if decision.retry:
            try:
                pool = pool_for(decision.resolution, self.config.pools)
            except PoolError as err:
                self._end(job, J.DEAD, str(err), "capability", a_state if in_flight else None)
                return
            self.store.transition(
                job,
                J.FAILED,
                attempt_state=a_state if in_flight else None,
                error=exc.message,
                error_kind=exc.kind,
                resolution=decision.resolution,
                notes=notes,
                next_attempt_at=time.time() + decision.delay,
            )
            self.publisher.publish(job, pool=pool, delay=decision.delay)
            return
        attempt_state = ("dead" if a_state == "failed" else a_state) if in_flight else None
        self._end(job, J.DEAD, decision.message, exc.kind, attempt_state, notes=notes)

    def _stale_upload(self, job: JobRecord, outcome: AttemptOutcome, exc: HostError) -> bool:
        """A 400 naming a missing upload: the host lost our inputs (restart on fresh disk).
        Forget the upload cache and run the job again at once, once, at no cost."""
        from ..client import names_missing_upload

        if not (outcome.state == "dead" and outcome.submitted and isinstance(exc, ValidationHostError)):
            return False
        if not names_missing_upload(exc.details) or self.store.attempt_counts("stale_upload", job.job_id).get(
            job.job_id
        ):
            return False
        self.client.forget_uploads()
        self.store.transition(
            job,
            J.FAILED,
            attempt_state="failed",
            error=f"{exc.message} (the host lost the uploaded inputs; uploading them again)",
            error_kind="stale_upload",
        )
        self.publisher.publish(job, pool=pool_for(job.resolution, self.config.pools), delay=0.0)
        return True

    def _hand_back(self, job: JobRecord, exc: HostConfigError) -> None:
        """The job is fine, this host is not: back to the queue for other hosts, not counted."""
        in_flight = job.state in J.IN_FLIGHT_STATES and job.state != J.UPLOADING
        self.store.transition(
            job,
            J.FAILED,
            attempt_state="failed" if in_flight else None,
            error=exc.message,
            error_kind="host_config",
        )
        self.publisher.publish(job, pool=pool_for(job.resolution, self.config.pools), delay=0.0)

    def _finished(self, job: JobRecord) -> None:
        self._on_job_end(job)  # (the executor announced "done" already)

    def _end(
        self,
        job: JobRecord,
        state: str,
        error: str,
        kind: str,
        attempt_state: str | None = None,
        notes: list[str] | None = None,
    ) -> None:
        changes: dict[str, Any] = {"error": error, "error_kind": kind, "finished_at": time.time()}
        if notes is not None:
            changes["notes"] = notes
        self.store.transition(job, state, attempt_state=attempt_state, **changes)
        self._on_job_end(job)

    # ------------------------------------------------------------------ events
    def _events_for(self, job: JobRecord) -> Callable[[str, JobRecord, dict], None]:
        """The executor's event callback for this job: its progress, throttled, to the store
        (state changes need nothing: the store records a "state" event with each)."""
        recorder = ProgressRecorder(self.store, job.job_id)

        def on_event(kind: str, job: JobRecord, data: dict) -> None:
            if kind == "progress":
                recorder.record(
                    data.get("value"), data.get("max"), node=data.get("node"), host=data.get("host")
                )

        return on_event

    # ------------------------------------------------------------------ the attempt's parts
    def _executor(self, host: str, job: JobRecord, work: Path) -> AttemptExecutor:
        own = host == self.host.safe_url
        cfg = self.config
        out_dir = Path(work) / "outputs"
        return AttemptExecutor(
            self.client if own else self._client_for(host),
            host,
            self._template(job),
            self.store,
            AttemptConfig(
                out_dir=out_dir,
                timeout=cfg.timeout,
                poll_interval=cfg.poll_interval,
                submit_settle=cfg.submit_settle,
                failover_grace=cfg.failover_grace,
                verify_outputs=cfg.verify_outputs,
                store_outputs=None if job.spec.get("out_dir") else self._store_outputs,
                forget_history=cfg.forget_history,
            ),
            events=self._events_for(job),
            on_host_ok=self._on_host_ok if own else None,
            on_host_failed=self._on_host_failed if own else None,
            prompt_id=lambda j: attempt_prompt_id(j.job_id, j.attempts + 1),
            durations=self._durations,
        )

    def _template(self, job: JobRecord) -> dict:
        """The job's API workflow: its own (a registered template travels with the job), a
        fleet batch's (kept in the store by hash), or a shipped template by name."""
        from ..workflow import WorkflowError, load_workflow

        spec = job.spec
        if isinstance(spec.get("workflow"), dict):
            return spec["workflow"]
        key = (
            f"workflow:{spec['workflow_sha']}"
            if spec.get("workflow_sha")
            else f"template:{spec.get('template')}"
        )
        graph = self._templates.get(key)
        if graph is None:
            if spec.get("workflow_sha"):
                graph = self.store.meta().get(key)
                if not isinstance(graph, dict):
                    raise JobInputError(
                        f"job {job.job_id}: its workflow {spec['workflow_sha'][:12]} is not stored"
                    )
            else:
                path = Path(self.config.templates_dir) / f"{spec.get('template')}_api.json"
                try:
                    graph = load_workflow(path)
                except (OSError, WorkflowError) as exc:
                    raise JobInputError(f"template {spec.get('template')!r}: {one_line(exc)}") from None
            self._templates[key] = graph
        return graph

    def _materialise_inputs(self, job: JobRecord, work: Path) -> None:
        """Inputs kept in the object store (API jobs) are fetched to this worker's disk."""
        spec = dict(job.spec)
        for key in ("image", "audio"):
            value = str(spec.get(key) or "")
            if not value or os.path.isabs(value):
                continue
            if self.storage is None:
                raise JobInputError(
                    f"job {job.job_id}: its {key} is in an object store; start the worker with --bucket"
                )
            dest = work / "inputs" / f"{key}{Path(value).suffix}"
            try:
                spec[key] = str(self.storage.get_file(value, dest))
            except Exception as exc:  # noqa: BLE001 - the store's one-line error, as a retryable failure
                raise TransientHostError(f"{key} {value}: {one_line(exc)}", kind="storage") from None
        job.spec = spec  # (in memory only: transitions never write the spec)

    def _store_outputs(self, job: JobRecord, files: list[Path]) -> list[str]:
        """Copy verified outputs to the object store under the job's keys; the job lists the keys."""
        from ..storage import job_key

        if self.storage is None:
            raise TransientHostError(
                f"job {job.job_id} has no output folder and this worker has no --bucket", kind="storage"
            )
        keys = []
        for path in files:
            key = job_key(job.job_id, "outputs", path.name)
            try:
                self.storage.put_file(key, path, "video/mp4" if path.suffix == ".mp4" else None)
            except Exception as exc:  # noqa: BLE001 - any store failure is worth another try
                raise TransientHostError(f"output {path.name}: {one_line(exc)}", kind="storage") from None
            keys.append(key)
        return keys
