"""One attempt of one job on one host: the unit every scheduling mode shares.

``AttemptExecutor.run`` prepares the inputs (real audio duration, uploads), records the
attempt BEFORE ``POST /prompt``, submits with our own prompt_id, follows the prompt to its
end (settling a fresh "unknown", cancelling on timeout, waiting out an unreachable host for
the failover grace), fetches and verifies every output, and RETURNS an ``AttemptOutcome``.

It knows nothing of scheduling, threads or where the record lives: the local batch
(runner/batch.py, over the Journal) and a fleet worker (over runner.store.JobStore) both
call it and apply their retry policy to the outcome. Host health goes out through the
``on_host_ok`` / ``on_host_failed`` callbacks, job changes and progress through ``events``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jobs as J
from .host_errors import (
    ExecutionHostError,
    HostConfigError,
    HostError,
    JobInputError,
    JobTimeoutError,
    TransientHostError,
    one_line,
)
from .jobs import JobRecord
from .lru import LruCache

log = logging.getLogger(__name__)

_STARTED_EVENTS = {"execution_start", "executing", "progress", "executed", "execution_cached"}

#: ``events(kind, job, data)``: kind "job" (the job's record changed; data is empty) or
#: "progress" (data has "host", "value" and "max").
EventCallback = Callable[[str, JobRecord, dict], None]


@dataclass
class AttemptConfig:
    """The per-attempt knobs (BatchConfig and the fleet worker's settings both fill it)."""

    out_dir: Path
    timeout: float = 3600.0  # counted from when the prompt starts running
    poll_interval: float = 2.0
    submit_settle: float = 3.0  # "unknown" right after a POST is asked again this long after it
    failover_grace: float = 30.0  # an unreachable host is waited for this long, then "abandoned"
    verify_outputs: bool = True
    #: Called with the verified files before the job is recorded done; returns what the job's
    #: ``outputs`` list (a fleet worker copies them to the object store and lists its keys).
    store_outputs: Callable[[JobRecord, list[Path]], list[str]] | None = None
    #: Once a job is recorded done, delete its prompt from the host's history. A render host
    #: keeps every finished prompt (graph and outputs) in memory up to ComfyUI's 10,000, so a
    #: fleet host's memory grows for days; a desktop ComfyUI's user may want to see them.
    forget_history: bool = False


@dataclass
class AttemptOutcome:
    """How an attempt ended.

    ``state``: "done" (outputs fetched and verified; ``job.outputs`` lists them), "failed"
    (the attempt ended with ``error``; the caller's retry policy decides), "lost" (the host
    does not know the prompt: it never arrived or the host restarted), "abandoned" (the host
    stayed unreachable for the failover grace; the prompt may still exist there) or "dead"
    (the host refused the prompt, or the input is bad: running it again cannot help).
    ``error`` is None for "done" and for a resumed attempt found unknown on its host (a new
    attempt, no failure of the job). ``submitted``: whether POST /prompt was sent.
    """

    state: str
    error: HostError | None = None
    host: str | None = None
    submitted: bool = True

    @property
    def done(self) -> bool:
        return self.state == "done"


class _LostAttempt(Exception):
    """The host confirmed it does not know the prompt: safe to run the job again."""


class _Abandoned(Exception):
    """The host stayed unreachable for the failover grace period."""


def _new_prompt_id(job: JobRecord) -> str:
    return str(uuid.uuid4())


def _ignore_event(kind: str, job: JobRecord, data: dict) -> None:
    return None


class AttemptExecutor:
    """Runs attempts of jobs on the one host behind ``client``.

    ``record`` has the Journal's interface (transition, start_attempt, set_attempt_state;
    record_unsent_attempt). ``prompt_id`` makes the id of the attempt about
    to start (called before ``start_attempt``, so ``job.attempts + 1`` is its number): the
    batch uses a uuid4, a worker a deterministic id so a redelivered task finds its prompt.
    ``durations`` is an optional cache of audio durations shared between executors.
    """

    def __init__(
        self,
        client: Any,
        host: str,
        template: dict,
        record: Any,
        config: AttemptConfig,
        events: EventCallback = _ignore_event,
        on_host_ok: Callable[[str], None] | None = None,
        on_host_failed: Callable[[str, HostError], None] | None = None,
        prompt_id: Callable[[JobRecord], str] = _new_prompt_id,
        durations: LruCache[str, float] | None = None,
    ) -> None:
        self.client = client
        self.host = host
        self.template = template
        self.record = record
        self.config = config
        self._events = events
        self._on_host_ok = on_host_ok or (lambda host: None)
        self._on_host_failed = on_host_failed or (lambda host, exc: None)
        self._prompt_id = prompt_id
        self._durations = durations if durations is not None else LruCache()

    # ------------------------------------------------------------------ entry points
    def run(self, job: JobRecord) -> AttemptOutcome:
        """One whole attempt of ``job`` (state "uploading" on this host) up to its outcome."""
        host = self.host
        try:
            prompt = self.prepare(job)
        except HostError as exc:
            # An attempt like any other (counted on resume, listed by the report), never POSTed.
            self.record.record_unsent_attempt(job, host, exc.message, exc.kind)
            if isinstance(exc, TransientHostError):
                self._host_failed(exc)
            state = "failed" if exc.retryable or isinstance(exc, HostConfigError) else "dead"
            return AttemptOutcome(state, exc, host=host, submitted=False)
        prompt_id, client_id = self._prompt_id(job), uuid.uuid4().hex
        self.record.start_attempt(job, host, prompt_id, client_id, job.resolution)
        self._events("job", job, {})
        try:
            self.client.submit(prompt, prompt_id, client_id)
        except HostError as exc:
            if exc.retryable:  # the POST may have reached the host: follow it before retrying
                return self.follow(job, client_id, lost_error=exc)
            return AttemptOutcome("dead", exc, host=host)  # refused (400): nothing queued
        return self.follow(job, client_id)

    def recover(self, job: JobRecord, client_id: str, lost: HostError) -> AttemptOutcome:
        """A job that may exist on this host after a runner restart: ask first, then follow or fetch.

        Unknown there: ``AttemptOutcome("lost", None)`` (a new attempt, not a failure).
        """
        try:
            status = self._settled_status(job, job.prompt_id)
            if status == "unknown":
                return AttemptOutcome("lost", None, host=self.host)
            if status == "done" and job.state == J.FETCHING:
                entry = self._history(job.prompt_id)
                self._check_entry(entry)
                self._fetch(job, entry)
                return AttemptOutcome("done", host=self.host)
        except _Abandoned as exc:
            return AttemptOutcome("abandoned", TransientHostError(str(exc), kind="connection"))
        except HostError as exc:
            return AttemptOutcome("failed", exc, host=self.host)
        return self.follow(job, client_id, lost_error=lost)

    def follow(self, job: JobRecord, client_id: str, lost_error: HostError | None = None) -> AttemptOutcome:
        """Wait for the current attempt to end on this host, then fetch it."""
        host = self.host
        try:
            entry = self._wait_settled(job, job.prompt_id, client_id, lost_error)
            self._check_entry(entry)
            self._fetch(job, entry)
        except _LostAttempt as exc:
            return AttemptOutcome("lost", TransientHostError(str(exc), kind="restart"))
        except _Abandoned as exc:
            return AttemptOutcome("abandoned", TransientHostError(str(exc), kind="connection"))
        except HostError as exc:
            if not isinstance(exc, TransientHostError):
                self._host_ok()  # it answered (with the job's error): the host itself is fine
            return AttemptOutcome("failed", exc, host=host)
        return AttemptOutcome("done", host=host)

    # ------------------------------------------------------------------ helpers
    def _host_ok(self) -> None:
        self._on_host_ok(self.host)

    def _host_failed(self, exc: HostError) -> None:
        self._on_host_failed(self.host, exc)

    def _move(self, job: JobRecord, state: str, attempt_state: str | None = None, **changes) -> None:
        """Commit a transition, then announce it."""
        self.record.transition(job, state, attempt_state=attempt_state, **changes)
        self._events("job", job, {})

    def prepare(self, job: JobRecord) -> dict:
        """The graph for this attempt: uploads, real audio duration, params, resolution tier."""
        from .workflow import WorkflowError, apply_params, get_param, set_resolution

        spec = job.spec
        params = dict(spec.get("params") or {})
        if spec.get("text") is not None:
            return self._prepare_text(job, params)
        audio = Path(spec["audio"])
        try:
            duration = self._duration(audio)
        except (ValueError, OSError) as exc:
            raise JobInputError(f"audio {audio}: {one_line(exc)}") from None
        try:
            fps = float(params.get("fps") or get_param(self.template, "fps"))
        except (WorkflowError, TypeError, ValueError):
            fps = 25.0
        try:
            get_param(self.template, "duration")
            has_duration = True
        except WorkflowError:
            has_duration = False
        if has_duration:
            note = _duration_note(params.get("duration"), duration, fps)
            if note and note not in job.notes:
                job.notes.append(note)  # written with the job's next transition
            params["duration"] = round(duration, 3)
        for key in ("image", "audio"):
            params[key] = self._upload(key, spec[key])
        try:
            prompt = apply_params(self.template, params)
            if job.resolution is not None and job.resolution != spec.get("resolution"):
                prompt = set_resolution(prompt, job.resolution)
        except WorkflowError as exc:
            raise JobInputError(one_line(exc)) from None
        return prompt

    def _prepare_text(self, job: JobRecord, params: dict) -> dict:
        """A text job's graph: no clip to probe or upload; the duration follows the speech the host makes."""
        from .text_jobs import text_params
        from .workflow import WorkflowError, apply_params, set_resolution

        try:
            params = text_params(self.template, params, job.spec["text"], job.notes)
            params["image"] = self._upload("image", job.spec["image"])
            prompt = apply_params(self.template, params)
            if job.resolution is not None and job.resolution != job.spec.get("resolution"):
                prompt = set_resolution(prompt, job.resolution)
        except WorkflowError as exc:
            raise JobInputError(one_line(exc)) from None
        return prompt

    def _upload(self, key: str, path: str) -> str:
        """Upload through the client, whose one cache reuses an upload per host and file version
        and is cleared when the host may have lost its input folder."""
        try:
            return self.client.upload(Path(path))
        except (OSError, ValueError) as exc:  # gone or unreadable since the batch started
            raise JobInputError(f"{key} {path}: cannot read it ({one_line(exc)})") from None

    def _duration(self, audio: Path) -> float:
        key = str(audio)
        seconds = self._durations.get(key)
        if seconds is None:
            from .probe import audio_duration

            seconds = float(audio_duration(audio))
            self._durations[key] = seconds
        return seconds

    def _on_event(self, job: JobRecord, prompt_id: str) -> Callable[[dict], None]:
        def handle(event: dict) -> None:
            kind, data = event.get("type"), event.get("data") or {}
            if isinstance(data, dict) and data.get("prompt_id") not in (None, prompt_id):
                return
            if kind in _STARTED_EVENTS and job.state == J.SUBMITTED and job.prompt_id == prompt_id:
                self._mark_running(job)
            if kind == "progress" and isinstance(data, dict):
                progress = {"host": self.host, "value": data.get("value"), "max": data.get("max")}
                self._events("progress", job, {**progress, "node": data.get("node")})

        return handle

    def _mark_running(self, job: JobRecord) -> None:
        if job.state == J.SUBMITTED:
            self._move(job, J.RUNNING, attempt_state="running", started_at=time.time())

    def _wait_settled(
        self,
        job: JobRecord,
        prompt_id: str,
        client_id: str,
        lost_error: HostError | None,
    ) -> dict:
        host, client = self.host, self.client
        """The finished history entry of ``prompt_id``; raises only once the attempt cannot run any more.

        The timeout counts from when the prompt starts running, so a job queued behind
        another one on its host is not punished for the wait.
        """
        timeout = self.config.timeout
        check_first = lost_error is not None
        while True:
            if check_first:
                check_first = False
                # An HTTP error answer means the host handled (and refused) the POST: no need to wait.
                settle = lost_error is None or lost_error.kind != "http_5xx"
                status = self._settled_status(job, prompt_id, settle=settle)
                if status == "unknown":
                    why = f"{lost_error.message}; " if lost_error is not None else ""
                    raise _LostAttempt(
                        f"{why}host {host} does not know prompt {prompt_id} (it restarted or never got it)"
                    )
                if status == "done":
                    return self._history(prompt_id)
                if status == "running":
                    self._mark_running(job)
            started = job.started_at if job.state == J.RUNNING else None
            remaining = timeout - (time.time() - started) if started else timeout
            if remaining <= 0:
                return self._cancel_timed_out(job, prompt_id)
            try:
                entry = client.wait(
                    prompt_id,
                    client_id,
                    timeout=remaining,
                    on_event=self._on_event(job, prompt_id),
                    poll_interval=self.config.poll_interval,
                )
                self._host_ok()
                return entry
            except JobTimeoutError:
                check_first = True  # still queued (fine) or running too long (cancelled above)
            except TransientHostError as exc:
                if exc.kind == "interrupted":
                    raise
                check_first = True  # ask the host what became of the prompt before anything else

    def _settled_status(self, job: JobRecord, prompt_id: str, settle: bool = True) -> str:
        """prompt_status, but "unknown" only counts once the POST cannot still be on its way.

        A runner killed (or a request timed out) right after sending POST /prompt may ask
        before the host has processed that request; asking again after ``submit_settle``
        seconds from the submission closes that window before the job may run again.
        """
        status = self._status_or_grace(job, prompt_id)
        # Only while nothing showed the host ever had it (a running prompt surely arrived).
        if status == "unknown" and settle and job.state == J.SUBMITTED and job.submitted_at:
            wait = self.config.submit_settle - (time.time() - job.submitted_at)
            if wait > 0:
                time.sleep(wait)
                status = self._status_or_grace(job, prompt_id)
        return status

    def _status_or_grace(self, job: JobRecord, prompt_id: str) -> str:
        """prompt_status, retried with backoff while the host is unreachable, up to the failover grace."""
        host, client = self.host, self.client
        first_failure: float | None = None
        delay = 0.1
        while True:
            try:
                status = client.prompt_status(prompt_id)
                self._host_ok()
                return status
            except HostError as exc:
                now = time.time()
                first_failure = first_failure or now
                self._host_failed(exc)
                if now - first_failure >= self.config.failover_grace:
                    raise _Abandoned(
                        f"host {host} unreachable for {self.config.failover_grace:g} s ({exc.message}); "
                        "moving the job elsewhere"
                    ) from None
                time.sleep(min(delay, max(0.0, self.config.failover_grace - (now - first_failure))))
                delay = min(delay * 2, 5.0)

    def _cancel_timed_out(self, job: JobRecord, prompt_id: str) -> dict:
        """Stop a prompt that ran past the timeout; returns its entry if it finished meanwhile."""
        host, client = self.host, self.client
        deadline = time.time() + max(5.0, self.config.failover_grace)
        for _ in range(1000):
            status = self._status_or_grace(job, prompt_id)
            if status == "done":
                entry = self._history(prompt_id)
                if entry_ok(entry):
                    return entry
                break
            if status == "unknown":
                break
            try:
                if status == "pending":
                    client.delete_queued([prompt_id])
                else:
                    client.interrupt(prompt_id)
            except HostError:
                pass
            if time.time() > deadline:
                # A host that ignores an interrupt is not trusted with new work until a probe
                # succeeds; that probe cancels this (then "abandoned") attempt once more.
                message = f"host {host} did not stop prompt {prompt_id} after the timeout"
                self._host_failed(TransientHostError(message, kind="timeout"))
                raise _Abandoned(message)
            time.sleep(0.2)
        raise JobTimeoutError(f"job did not finish within {self.config.timeout:g} s on {host}")

    def _history(self, prompt_id: str) -> dict:
        for _ in range(20):
            entry = self.client.history(prompt_id)
            if entry:
                return entry
            time.sleep(0.1)
        raise TransientHostError(
            f"history of {prompt_id} stayed empty although the host reported it done", kind="restart"
        )

    @staticmethod
    def _check_entry(entry: dict) -> None:
        if not entry_ok(entry):
            from .host_errors import classify_execution_error

            raise classify_execution_error(entry.get("status") or {})

    def _fetch(self, job: JobRecord, entry: dict) -> None:
        """Download and verify every output file; then the job is done."""
        if job.state == J.SUBMITTED:
            self._mark_running(job)
        finished_on_host = time.time()
        if job.state != J.FETCHING:  # (a resumed download is already "fetching")
            began = job.started_at or job.submitted_at or finished_on_host
            run_seconds = job.run_seconds + max(0.0, finished_on_host - began)
            self._move(job, J.FETCHING, attempt_state="fetching", run_seconds=run_seconds)
        refs = self.client.output_files(entry)
        if not refs:
            raise ExecutionHostError("host reported success but listed no output files", kind="execution")
        out_dir = Path(job.spec.get("out_dir") or self.config.out_dir)
        base = job.spec.get("name") or job.job_id  # (a fleet batch's job id carries its batch)
        files = []
        for index, ref in enumerate(refs):
            ext = Path(str(ref.get("filename", ""))).suffix or ".bin"
            dest = out_dir / (f"{base}{ext}" if index == 0 else f"{base}_{index}{ext}")
            self._download(self.client, ref, dest)
            if self.config.verify_outputs:
                verify_media(dest)
            files.append(dest.resolve())
        store = self.config.store_outputs
        paths = store(job, files) if store is not None else [str(f) for f in files]
        now = time.time()
        self._move(
            job,
            J.DONE,
            attempt_state="done",
            outputs=paths,
            finished_at=now,
            download_seconds=job.download_seconds + (now - finished_on_host),
            notes=job.notes,
        )
        if self.config.forget_history:
            self._forget(job.prompt_id)

    def _forget(self, prompt_id: str) -> None:
        """After the end is recorded nothing asks the host about the prompt again (a resumed or
        redelivered job that is done stops at the record). A failure costs only host memory."""
        try:
            self.client.delete_history([prompt_id])
        except HostError as exc:
            log.info("host %s kept prompt %s in its history: %s", self.host, prompt_id, exc.message)

    @staticmethod
    def _download(client: Any, ref: dict, dest: Path, tries: int = 3) -> None:
        """The result exists on the host: a failed download is retried before the job is re-run."""
        for attempt in range(1, tries + 1):
            try:
                client.download(ref, dest)
                return
            except TransientHostError:
                if attempt == tries:
                    raise
                time.sleep(0.5 * attempt)


def verify_media(path: Path) -> None:
    """Raise unless ``path`` is non-empty and PyAV can decode something from it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise ExecutionHostError(f"output {path.name} is empty or missing after download", kind="verify")
    import av  # lazy: keeps `sonic-runner --help` fast

    try:
        with av.open(str(path)) as container:
            streams = (
                list(container.streams.video) or list(container.streams.audio) or list(container.streams)
            )
            if streams:
                for frame in container.decode(streams[0]):
                    if frame is not None:
                        return
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a broken file
        raise ExecutionHostError(
            f"output {path.name} does not decode: {one_line(exc)}", kind="verify"
        ) from None
    raise ExecutionHostError(f"output {path.name} has no decodable frame", kind="verify")


def _duration_note(given: Any, real: float, fps: float) -> str | None:
    """A note when a manifest duration disagrees with the audio by more than one frame (0 = "from audio")."""
    if given in (None, ""):
        return None
    try:
        value = float(given)
    except (TypeError, ValueError):
        return f"duration {given!r} is not a number; used the audio's {real:.3f} s"
    if value > 0 and abs(value - real) > 1.0 / fps:
        return f"duration {value:g} s corrected to the audio's {real:.3f} s"
    return None


def entry_ok(entry: dict) -> bool:
    """Whether a history entry ended well (no execution error or interrupt among its messages)."""
    status = entry.get("status") or {}
    return status.get("status_str", "success") != "error" and not any(
        isinstance(m, (list, tuple)) and m and m[0] in ("execution_error", "execution_interrupted")
        for m in status.get("messages") or []
    )
