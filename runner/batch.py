"""The batch orchestrator: every job of a manifest done exactly once across many ComfyUI hosts.

How "exactly once" holds even under kill -9:
- Every state change is committed to the journal before it takes effect; an attempt's
  prompt_id (our own uuid4) is committed as "submitted" before ``POST /prompt``.
- A job is re-queued only when its previous attempt can no longer run: it ended on the
  host (success or error), the host confirmed it does not know the prompt (never arrived,
  or the host restarted and lost its queue), a timed-out prompt was cancelled and the
  cancel confirmed, or the host stayed unreachable for the whole failover grace period
  (the attempt is then "abandoned" and cancelled on that host first thing if it returns,
  in this run or - journal in hand - on ``--resume``; one that finished there anyway is
  recorded as "done_duplicate").
- On ``--resume`` every job that may exist on a host is asked about (``prompt_status``)
  before anything else: done -> fetch its outputs, running/pending -> keep following it,
  unknown -> a new attempt.

Threads: the calling thread dispatches (scheduler decisions, health probes, batch events);
one short-lived worker thread follows each in-flight job (at most ``cap`` per host).

This module schedules only: the work of one attempt (inputs, submit, follow, fetch, verify,
classify) is runner/attempt.py's ``AttemptExecutor``, shared with the fleet worker; its
outcome comes back here for the retry policy, requeueing and host exclusions.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jobs as J
from .attempt import AttemptConfig, AttemptExecutor, AttemptOutcome, entry_ok
from .host_errors import (
    HostConfigError,
    HostError,
    TransientHostError,
    ValidationHostError,
    one_line,
)
from .jobs import JobRecord, parse_priority
from .journal import Journal
from .lru import LruCache
from .retry import Decision, RetryPolicy
from .scheduler import HostState, Scheduler

Sink = Callable[[dict], None]

#: Manifest columns that describe the job rather than fill a workflow input.
JOB_COLUMNS = {"image", "audio", "text", "id", "priority", "row", "vram_gb"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class BatchConfig:
    """Everything a batch needs; the CLI fills it from arguments."""

    workflow_path: Path
    out_dir: Path
    hosts: list  # list[HostSpec] (runner/secrets.py)
    journal_path: Path | None = None
    manifest_path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)  # --set, under every row's own values
    resume: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    inflight: int = 2
    timeout: float = 3600.0  # per attempt, counted from when the prompt starts running
    failover_grace: float = 30.0  # an unreachable host's jobs move elsewhere after this long
    submit_settle: float = 3.0  # "unknown" right after a POST is asked again this long after it
    health_backoff_base: float = 1.0
    health_backoff_cap: float = 30.0
    idle_check_interval: float = 10.0  # an idle host silent this long is probed before it gets work
    poll_interval: float = 2.0
    request_timeout: float = 30.0
    batch_event_interval: float = 1.0
    verify_outputs: bool = True
    give_up_after: float = 600.0  # no host could work this long: stop (exit 3), jobs stay queued
    retry_excluded: bool = False  # on resume, try again hosts an earlier run excluded (no weights)

    def journal_file(self) -> Path:
        return Path(self.journal_path) if self.journal_path else Path(self.out_dir) / "journal.sqlite"

    def error_log_file(self) -> Path:
        """Where a runner bug's traceback goes (beside the journal)."""
        journal = self.journal_file()
        return journal.with_name(journal.stem + ".runner-errors.log")


#: run() exit codes beyond 0 (all done) and 1 (some job dead).
EXIT_STOPPED = 130  # stop() was called: unfinished jobs stay in the journal for --resume
EXIT_NO_HOST = 3  # no host could work for give_up_after seconds: unfinished jobs stay queued
EXIT_RUNNER_BUG = 70  # an unexpected exception inside the runner (traceback in the error log)


class BatchError(RuntimeError):
    """The batch cannot start (one line: what is wrong and what to do)."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def safe_job_id(value: object) -> str:
    """A manifest id usable as a file name (the output is OUT/<job_id><ext>)."""
    text = _SAFE_NAME.sub("_", str(value).strip()).strip("._")
    return text[:120]


def build_jobs(rows: Iterable[Any], template: dict, params: dict[str, Any]) -> list[JobRecord]:
    """JobRecords for manifest rows (runner/manifest.py); a bad row becomes a dead job with its error.

    Parameter names are checked against the template here (once per distinct column), so a
    typo in a column name ends its rows at once with the list of inputs that exist, before
    any host is touched. Values are converted when the job's graph is built; a bad value
    then ends that job (non-retryable) with the same kind of one-line message.
    """
    from .text_jobs import check_source
    from .workflow import apply_params, resolution_of

    jobs: list[JobRecord] = []
    seen: set[str] = set()
    good_keys: set[str] = set()
    files: dict[str, bool] = {}  # path -> exists (manifests often reuse a portrait or a clip)
    default_resolution = resolution_of(template)
    now = time.time()
    for index, row in enumerate(rows, 1):
        if isinstance(row, BaseException):
            row = {"row": getattr(row, "row", None) or index, "error": one_line(row)}
        number = int(row.get("row") or index)
        job_id = safe_job_id(row["id"]) if row.get("id") not in (None, "") else f"row{number:05d}"
        if job_id in seen:
            job_id = f"row{number:05d}"
        seen.add(job_id)
        if row.get("error"):
            jobs.append(_dead(job_id, number, one_line(row["error"]), now))
            continue
        if isinstance(row.get("params"), dict):  # runner/manifest.py rows
            row_params = dict(row["params"])
        else:  # a flat row (image, audio, id, priority, parameter columns)
            row_params = {k: v for k, v in row.items() if k not in JOB_COLUMNS}
        row_params = {
            k: v for k, v in row_params.items() if k not in ("line", "error") and v not in (None, "")
        }
        vram_gb = row_params.pop("vram_gb", row.get("vram_gb"))
        job_params = {**params, **row_params}
        try:
            priority = parse_priority(row.get("priority"))
            has_text = row.get("text") not in (None, "")
            check_source(template, has_text)
            for key in ("image",) if has_text else ("image", "audio"):
                value = row.get(key)
                if not value or not (files.get(value) or files.setdefault(value, os.path.isfile(value))):
                    raise ValueError(
                        f"column {key!r}: {row.get(key)!r} not found; give the path of an existing file"
                    )
            if vram_gb not in (None, ""):
                vram_gb = float(vram_gb)
            for key, value in job_params.items():
                if key not in good_keys:
                    apply_params(template, {key: value})
                    good_keys.add(key)
            resolution = _resolution(job_params, default_resolution)
        except ValueError as exc:
            jobs.append(_dead(job_id, number, f"row {number}: {one_line(exc)}", now))
            continue
        spec = {
            "image": os.path.abspath(row["image"]),
            # a text job: the host speaks it (SONIC_TextToSpeech; runner/text_jobs.py)
            **({"text": str(row["text"])} if has_text else {"audio": os.path.abspath(row["audio"])}),
            "params": job_params,
        }
        if vram_gb not in (None, ""):
            spec["vram_gb"] = vram_gb
        spec["resolution"] = resolution
        jobs.append(
            JobRecord(
                job_id=job_id, row=number, priority=priority, spec=spec, resolution=resolution, created_at=now
            )
        )
    return jobs


def _resolution(params: dict[str, Any], default: int | None) -> int | None:
    """The job's min_resolution tier: its own parameter if it sets one, else the template's."""
    for key, value in params.items():
        if key == "min_resolution" or key.endswith(".min_resolution"):
            try:
                number = float(str(value).strip())
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a whole number; give e.g. 512") from None
            if not number.is_integer() or number <= 0:
                raise ValueError(f"{key}={value!r} is not a positive whole number; give e.g. 512")
            return int(number)
    return default


def _dead(job_id: str, row: int, message: str, now: float) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        row=row,
        state=J.DEAD,
        error=message,
        error_kind="input",
        created_at=now,
        finished_at=now,
    )


class Batch:
    """Runs (or resumes) one batch; ``run()`` returns the exit code (1 if any job is dead)."""

    def __init__(
        self,
        config: BatchConfig,
        sinks: Iterable[Sink] = (),
        client_factory: Callable[[Any], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.sinks = list(sinks)
        self._client_factory = client_factory or self._default_client
        self._clock = clock
        self._lock = threading.Condition()
        self._emit_lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._free_attempts: dict[str, int] = {}  # attempts not counted (the host could not run the workflow)
        self._enqueued_at: dict[str, float] = {}
        self._durations: LruCache[str, float] = LruCache()  # audio path -> seconds (shared by the executors)
        self._executors: dict[str, AttemptExecutor] = {}
        self._cancel_pending: set[str] = set()  # hosts holding abandoned attempts to cancel
        self._cancelling: set[str] = set()  # hosts whose cancel pass runs now (one thread each)
        self._reuploaded: set[str] = set()  # jobs already retried once after a host lost their uploads
        self._stop = threading.Event()
        self.bug: str | None = None  # one line about a runner bug that stopped the batch
        self.bug_log: Path | None = None
        self.gave_up: list[str] | None = None  # one line per host when no host could work
        self._fleet_down: float | None = None  # since when (batch clock) no host could work
        self._run_started = 0.0
        self._closed = False  # close() ran: a worker still winding down writes (and reports) nothing
        self.gave_up_after_s = 0.0
        self.jobs: dict[str, JobRecord] = {}
        self._open = 0  # jobs not yet done/dead (the loop ends at 0 with no worker left)
        self.journal: Journal | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self.first_dispatch_at: float | None = None
        specs = list(config.hosts)
        if not specs:
            raise BatchError("no hosts: give at least one --host URL or a --hosts-file")
        self.specs = {s.safe_url: s for s in specs}
        self.clients = {s.safe_url: self._client_factory(s) for s in specs}
        self.host_names: dict[str, str] = {s.safe_url: s.name for s in specs}  # safe_url -> name
        self._host_keys = {_host_key(s.safe_url): s.safe_url for s in specs}
        self.scheduler = Scheduler(
            [
                HostState(s.safe_url, s.max_resolution, s.vram_gb, cap=max(1, config.inflight), label=s.label)
                for s in specs
            ],
            health_backoff_base=config.health_backoff_base,
            health_backoff_cap=config.health_backoff_cap,
            idle_check_interval=config.idle_check_interval,
        )

    # ------------------------------------------------------------------ setup
    def _default_client(self, spec: Any) -> Any:
        from .client import ComfyClient

        client = ComfyClient(spec.base_url, headers=spec.headers, timeout=self.config.request_timeout)
        # wait() gives up on an unreachable host after this long; the batch's failover grace then runs.
        client.host_down_grace = min(client.host_down_grace, self.config.failover_grace)
        return client

    def _redact(self, text: str) -> str:
        try:
            from .secrets import redact
        except ImportError:  # pragma: no cover - secrets.py is part of the package
            return text
        return redact(text)

    def open(self) -> None:
        """Create the journal (new batch) or load it (resume); loads self.template and self.jobs."""
        from .workflow import load_workflow

        cfg = self.config
        path = cfg.journal_file()
        self.template = load_workflow(cfg.workflow_path)
        workflow_hash = sha256_file(cfg.workflow_path)
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        exists = path.is_file() and path.stat().st_size > 0
        if cfg.resume and not exists:
            raise BatchError(f"--resume: journal {path} does not exist; start the batch without --resume")
        path.parent.mkdir(parents=True, exist_ok=True)
        # One writer per journal: a second runner stops here, before it writes anything.
        self.journal = Journal(path, redact=self._redact, writer=True)
        try:
            self._load(workflow_hash)
        except BaseException:
            self.journal.close()  # (and with it the writer lock)
            raise

    def _load(self, workflow_hash: str) -> None:
        cfg = self.config
        path = cfg.journal_file()
        meta = self.journal.meta()
        if cfg.resume:
            if meta.get("workflow_hash") not in (None, workflow_hash):
                raise BatchError(
                    f"--resume: workflow {cfg.workflow_path} changed since the batch started "
                    "(hash differs); resume with the same workflow file or start a new batch"
                )
            self.jobs = {j.job_id: j for j in self.journal.jobs()}
            # Attempts on a host that could not run the workflow (or that had lost our uploads)
            # were never the job's fault.
            self._free_attempts = self.journal.attempt_counts(error_kind="host_config")
            stale = self.journal.attempt_counts(error_kind="stale_upload")
            for job_id, n in stale.items():
                self._free_attempts[job_id] = self._free_attempts.get(job_id, 0) + n
            self._reuploaded = set(stale)
            # A host an earlier run found unable to run the workflow (no weights) stays excluded,
            # unless asked to try it again (its weights may have been installed since).
            excluded = {} if cfg.retry_excluded else dict(meta.get("excluded_hosts") or {})
            for url, why in excluded.items():
                host = self._resolve_host(url)
                if host is not None:
                    self.scheduler.exclude(
                        host, f"{why} (excluded by an earlier run; --retry-excluded tries again)"
                    )
            names = {**(meta.get("host_names") or {}), **self.host_names}
            self.journal.set_meta(
                {
                    "host_names": {url: self._redact(name) for url, name in names.items()},
                    "hosts": sorted(set(self.specs) | set(meta.get("hosts") or [])),
                    "excluded_hosts": excluded,
                }
            )
            self.host_names = names
            return
        if meta.get("created") is not None or self.journal.counts():
            raise BatchError(
                f"journal {path} already holds a batch; add --resume to continue it or pass a new --journal/--out"
            )
        if cfg.manifest_path is not None:
            from .manifest import read_manifest

            rows = read_manifest(cfg.manifest_path)  # a whole-file problem raises ManifestError
        else:
            rows = []
        new_jobs = build_jobs(rows, self.template, cfg.params)
        self.add_jobs(new_jobs, workflow_hash)

    def add_jobs(self, new_jobs: list[JobRecord], workflow_hash: str | None = None) -> None:
        """Write the batch meta and its jobs (used by ``open`` and by the one-job ``run``)."""
        cfg = self.config
        self.journal.set_meta(
            {
                "workflow_path": str(Path(cfg.workflow_path).resolve()),
                "workflow_hash": workflow_hash or sha256_file(cfg.workflow_path),
                "out_dir": str(Path(cfg.out_dir).resolve()),
                "manifest_path": str(cfg.manifest_path) if cfg.manifest_path else None,
                "created": time.time(),
                "hosts": sorted(self.specs),
                "host_names": {url: self._redact(name) for url, name in self.host_names.items()},
                "excluded_hosts": {},
                # Rows dead before any dispatch (bad file, bad column) get their job event once.
                "load_dead_announced": False,
            }
        )
        self.journal.add_jobs(new_jobs)
        self.jobs = {j.job_id: j for j in new_jobs}

    # ------------------------------------------------------------------ events
    def _emit(self, event: dict) -> None:
        with self._emit_lock:
            for sink in self.sinks:
                try:
                    sink(event)
                except Exception:  # noqa: BLE001 - a sink must never break the batch
                    pass

    def _job_event(self, job: JobRecord) -> None:
        self._emit(
            {
                "event": "job",
                "job_id": job.job_id,
                "row": job.row,
                "state": job.state,
                "host": job.host,
                "host_name": self.host_names.get(job.host) if job.host else None,
                "attempt": job.attempts,
                "error": job.error,
                "error_kind": job.error_kind,
                "outputs": list(job.outputs),
                "ts": time.time(),
            }
        )

    def _move(self, job: JobRecord, state: str, attempt_state: str | None = None, **changes) -> None:
        """Commit a transition, then announce it."""
        self.journal.transition(job, state, attempt_state=attempt_state, **changes)
        if state in J.FINAL_STATES:
            with self._lock:
                self._open -= 1
                self._lock.notify_all()
        self._job_event(job)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in J.STATES}
        for job in self.jobs.values():
            out[job.state] += 1
        return out

    def _batch_event(self) -> None:
        c = self.counts()
        self._emit(
            {
                "event": "batch",
                "total": len(self.jobs),
                "done": c[J.DONE],
                "dead": c[J.DEAD],
                "running": sum(c[s] for s in J.IN_FLIGHT_STATES),
                "queued": c[J.QUEUED] + c[J.FAILED],
                "ts": time.time(),
                **self._waiting_fields(),
            }
        )

    def _waiting_fields(self) -> dict:
        """While no host can work: since when (epoch s) and when the batch gives up (the display shows it)."""
        since = self._fleet_down
        if since is None or self.gave_up is not None:
            return {}
        now_wall, now = time.time(), self._clock()
        return {
            "no_host_since": now_wall - (now - since),
            "give_up_at": now_wall + (since + self.config.give_up_after - now),
        }

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Dispatch until every job is done or dead.

        Returns 0 (all done), 1 (some job dead), EXIT_NO_HOST (no host could work for
        ``give_up_after`` s; ``self.gave_up`` says why per host), EXIT_RUNNER_BUG (a bug in the
        runner; ``self.bug`` names the log) or EXIT_STOPPED (``stop()``). In the last three
        cases unfinished jobs stay in the journal as they are, and ``--resume`` continues them.
        """
        if self.journal is None:
            self.open()
        self.started_at = time.time()
        self._run_started = self._clock()
        self._open = sum(1 for j in self.jobs.values() if not j.final)
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - a runner bug stops the batch; it never ends a job
            self._runner_bug(exc)
        finally:
            stopped = self._stop.is_set()
            self._stop.set()
            self.finished_at = time.time()
        self._batch_event()
        with self._lock:
            idle = not self._workers
        if idle:  # nothing of this run writes any more: another runner may take the journal
            self.journal.release_writer()
        if self.bug is not None:
            return EXIT_RUNNER_BUG
        if self.gave_up is not None:
            return EXIT_NO_HOST
        if stopped:
            return EXIT_STOPPED
        return 1 if any(j.state == J.DEAD for j in self.jobs.values()) else 0

    def _loop(self) -> None:
        self._announce_dead_rows()
        self._recover_and_queue()
        self._check_abandoned_hosts()
        last_batch_event = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._dispatch(now)
                for host in self.scheduler.due_checks(now):
                    self._start_probe(host.name)
                if self._stop.is_set():
                    break
                if self._no_host_can_work(now):
                    break
                if not self._workers and self._open <= 0 and not self._cancel_in_flight():
                    break
                wake = self.scheduler.next_wakeup()
                delay = 0.25 if wake is None else max(0.005, min(0.25, wake - now))
                if time.time() - last_batch_event >= self.config.batch_event_interval:
                    last_batch_event = time.time()
                    emit_batch = True
                else:
                    emit_batch = False
                self._lock.wait(delay)
            if emit_batch:
                self._batch_event()
        if self.gave_up is not None:
            # Jobs waiting out a retry backoff are queued again: the next run starts them at once.
            for job in sorted(self.jobs.values(), key=lambda j: j.row):
                if job.state == J.FAILED:
                    self._move(job, J.QUEUED, next_attempt_at=0.0)
            self._emit({"event": "gave_up", "hosts": list(self.gave_up), "ts": time.time()})

    def _fleet_down_since(self) -> float | None:
        """Since when (batch clock) no host could work, or None while one can (lock held).

        A host works when it is healthy and has answered, or holds jobs in flight; a host that
        never answered yet (its first probe may hang on a black-holed address) does not.
        Excluded hosts do not count: their jobs are dead or elsewhere.
        """
        since: float | None = None
        hosts = [h for h in self.scheduler.hosts.values() if h.excluded is None]
        if not hosts or self._open <= 0:
            return None
        for h in hosts:
            if h.healthy and (h.last_ok is not None or h.inflight):
                return None
            down = h.unreachable_since if not h.healthy and h.unreachable_since is not None else None
            down = self._run_started if down is None else max(down, self._run_started)
            since = down if since is None else max(since, down)
        return since

    def _no_host_can_work(self, now: float) -> bool:
        """True (and ``self.gave_up`` set) once no host could work for ``give_up_after`` s (lock held)."""
        since = self._fleet_down_since()
        self._fleet_down = since
        if since is None or now - since < self.config.give_up_after:
            return False
        waited = now - since
        self.gave_up = [
            f"{h.label or h.name}: {self._redact(h.error or f'no answer within {waited:.0f} s')}"
            for h in self.scheduler.hosts.values()
            if h.excluded is None
        ]
        self.gave_up_after_s = waited
        return True

    def _runner_bug(self, exc: BaseException, job: JobRecord | None = None) -> None:
        """An unexpected exception inside the runner: never the job's fault.

        The traceback goes to the error log beside the journal, the batch stops taking new
        work (``run`` returns EXIT_RUNNER_BUG), and the job stays as the journal has it, so
        ``--resume`` asks its host about it or queues it again.
        """
        import traceback

        if self._closed:  # the batch has ended; the journal is closed under this worker's feet
            return
        log = self.config.error_log_file()
        what = f" while handling job {job.job_id} (state {job.state})" if job is not None else ""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"[{stamp}] pid {os.getpid()}: runner error{what}\n{self._redact(text)}\n")
            where = f"traceback in {log}"
        except OSError as err:
            where = f"could not write the traceback to {log} ({one_line(err)})"
        with self._lock:
            if self.bug is None:
                self.bug = (
                    f"runner error ({type(exc).__name__}: {self._redact(one_line(exc))}){what}; "
                    f"stopped taking new work; {where}; unfinished jobs stay in the journal, "
                    "continue with --resume"
                )
                self.bug_log = log
        self.stop()

    def close(self) -> None:
        """Close the journal and let another runner take it (the kernel does this on any exit, too)."""
        self._closed = True
        if self.journal is not None:
            self.journal.close()

    def stop(self) -> None:
        """Stop dispatching and return from run(); in-flight jobs stay recorded for --resume."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def _announce_dead_rows(self) -> None:
        """A job event for each row that was dead before any dispatch (missing file, bad column).

        Sent once per batch: the journal records that it was sent, so a resume does not
        repeat it (and a run killed before sending it sends it on resume).
        """
        if self.journal.meta().get("load_dead_announced") is not False:
            return
        for job in sorted(self.jobs.values(), key=lambda j: j.row):
            if job.state == J.DEAD and job.attempts == 0:
                self._job_event(job)
        self.journal.set_meta({"load_dead_announced": True})

    def _recover_and_queue(self) -> None:
        """Put every job where it belongs: asked about on its host, queued, or left final."""
        now = self._clock()
        ordered = sorted(self.jobs.values(), key=lambda j: j.row)
        self._announce_missing_hosts([j for j in ordered if j.state in J.ON_HOST_STATES])
        for job in ordered:
            if job.final:
                continue
            if job.state == J.UPLOADING:  # killed before POST /prompt: nothing exists on a host
                self._move(job, J.QUEUED)
            if job.state in J.ON_HOST_STATES:
                self._start_recovery(job)
                continue
            self._queue(job, now)

    def _check_abandoned_hosts(self) -> None:
        """Hosts holding attempts an earlier run abandoned: cancel them on first contact (resume).

        Every host starts healthy on ``--resume``, so the cancel that a host's return
        triggers in a running batch would never happen. A probe is started for each such
        host at once; the host gets no new work until the probe (and with it the cancel
        pass) is done, and an unreachable host runs it when a later probe succeeds.
        """
        hosts = {self._resolve_host(a["host"]) for a in self.journal.attempts_in_state("abandoned")}
        with self._lock:
            for host in hosts:
                if host in self.scheduler.hosts:
                    self._cancel_pending.add(host)
                    self._start_probe(host)

    def _cancel_in_flight(self) -> bool:
        """A probe that will run a cancel pass is under way (the batch waits for it before ending)."""
        busy = self._cancel_pending | self._cancelling
        return any(self.scheduler.hosts[h].checking for h in busy if h in self.scheduler.hosts)

    def _queue(self, job: JobRecord, now: float) -> None:
        why = self.scheduler.why_unplaceable(job)
        if why is not None:
            self._move(job, J.DEAD, error=why, error_kind=self._unplaceable_kind(), finished_at=time.time())
            return
        self._enqueued_at.setdefault(job.job_id, now)
        self.scheduler.push(job)

    def _dispatch(self, now: float) -> None:
        while True:
            picked = self.scheduler.next_assignment(now)
            if picked is None:
                return
            job, host = picked
            if self.first_dispatch_at is None:
                self.first_dispatch_at = time.time()
            waited = now - self._enqueued_at.pop(job.job_id, now)
            if job.state == J.FAILED:
                self.journal.transition(job, J.QUEUED)
            self._move(job, J.UPLOADING, host=host.name, queued_seconds=job.queued_seconds + max(0.0, waited))
            self._spawn(self._attempt, job, host.name)

    def _spawn(self, target: Callable, *args: Any) -> None:
        def body() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._workers.discard(threading.current_thread())
                    self._lock.notify_all()

        thread = threading.Thread(target=body, daemon=True)
        with self._lock:
            self._workers.add(thread)
        thread.start()

    # ------------------------------------------------------------------ one attempt
    def _executor(self, host: str) -> AttemptExecutor:
        """The attempt executor of ``host`` (one per host, sharing the audio duration cache)."""
        executor = self._executors.get(host)
        if executor is None:
            cfg = self.config
            executor = AttemptExecutor(
                self.clients[host],
                host,
                self.template,
                self.journal,
                AttemptConfig(
                    out_dir=Path(cfg.out_dir),
                    timeout=cfg.timeout,
                    poll_interval=cfg.poll_interval,
                    submit_settle=cfg.submit_settle,
                    failover_grace=cfg.failover_grace,
                    verify_outputs=cfg.verify_outputs,
                ),
                events=self._attempt_event,
                on_host_ok=self._host_ok,
                on_host_failed=self._host_failed,
                durations=self._durations,
            )
            self._executors[host] = executor
        return executor

    def _attempt_event(self, kind: str, job: JobRecord, data: dict) -> None:
        if kind == "progress":
            self._emit(
                {
                    "event": "progress",
                    "job_id": job.job_id,
                    "host": data.get("host"),
                    "host_name": self.host_names.get(data.get("host")),
                    "value": data.get("value"),
                    "max": data.get("max"),
                }
            )
            return
        if job.state in J.FINAL_STATES:
            with self._lock:
                self._open -= 1
                self._lock.notify_all()
        self._job_event(job)

    def _attempt(self, job: JobRecord, host: str) -> None:
        """One attempt of ``job`` on ``host`` (worker thread); then the retry policy."""
        try:
            self._settle(job, self._executor(host).run(job))
        except Exception as exc:  # noqa: BLE001 - a bug must end the job visibly, not hang the batch
            self._crashed(job, exc)

    def _settle(self, job: JobRecord, outcome: AttemptOutcome) -> None:
        """Apply an attempt's outcome: done -> free the slot; else requeue or end the job."""
        if outcome.done:
            self._release(job)
        elif outcome.error is None:  # (resume) the host does not know it: a new attempt, no failure
            self._move(job, J.QUEUED, attempt_state="lost", error=None, error_kind=None)
            with self._lock:
                self.scheduler.release(job.job_id)
                self._queue(job, self._clock())
                self._lock.notify_all()
        elif outcome.state == "dead" and outcome.submitted:  # refused (400): nothing queued
            if not self._reupload_after_refusal(job, self.clients[outcome.host], outcome.error):
                self._failed(job, outcome.error, attempt_state="dead")
        elif outcome.state in ("lost", "abandoned"):
            self._failed(job, outcome.error, attempt_state=outcome.state)
        else:
            self._failed(job, outcome.error, attempt_state="failed", host=outcome.host)

    def _reupload_after_refusal(self, job: JobRecord, client: Any, exc: HostError) -> bool:
        """A 400 naming a missing LoadImage/LoadAudio file: the host lost our uploads (a restart
        on fresh storage), not a bad graph. Upload again and retry the job once, at no cost."""
        from .client import names_missing_upload

        if not isinstance(exc, ValidationHostError) or not names_missing_upload(exc.details):
            return False
        if job.job_id in self._reuploaded:
            return False  # it happened again right after a fresh upload: a real validation error
        self._reuploaded.add(job.job_id)
        client.forget_uploads()
        self._free_attempts[job.job_id] = self._free_attempts.get(job.job_id, 0) + 1
        self._move(
            job,
            J.FAILED,
            attempt_state="failed",
            error=f"{exc.message} (the host lost the uploaded inputs; uploading them again)",
            error_kind="stale_upload",
            next_attempt_at=self._clock(),
        )
        with self._lock:
            self.scheduler.release(job.job_id)
            self._queue(job, self._clock())
            self._lock.notify_all()
        return True

    # ------------------------------------------------------------------ endings
    def _release(self, job: JobRecord) -> None:
        with self._lock:
            self.scheduler.release(job.job_id)
            self._lock.notify_all()

    def _failed(
        self, job: JobRecord, exc: HostError, attempt_state: str | None, host: str | None = None
    ) -> None:
        """Apply the retry policy to a failed attempt (its prompt can no longer run)."""
        if isinstance(exc, HostConfigError):
            decision = self._host_config_decision(job, exc, host or job.host)
        else:
            attempts = job.attempts - self._free_attempts.get(job.job_id, 0)
            decision = self.config.policy.decide(
                attempts=max(1, attempts),
                kind=exc.kind,
                retryable=exc.retryable,
                message=exc.message,
                resolution=job.resolution,
            )
        notes = [*job.notes, decision.note] if decision.note else job.notes
        if job.state in (J.SUBMITTED, J.RUNNING, J.FETCHING, J.UPLOADING) and attempt_state is not None:
            a_state = attempt_state if decision.retry or attempt_state in ("lost", "abandoned") else "dead"
        else:
            a_state = None
        if decision.retry:
            self._move(
                job,
                J.FAILED,
                attempt_state=a_state,
                error=exc.message,
                error_kind=exc.kind,
                resolution=decision.resolution,
                notes=notes,
                next_attempt_at=self._clock() + decision.delay,
            )
            with self._lock:
                self.scheduler.release(job.job_id)
                self._queue(job, self._clock())
                self._lock.notify_all()
        else:
            self._move(
                job,
                J.DEAD,
                attempt_state=a_state,
                error=decision.message,
                error_kind=exc.kind,
                notes=notes,
                finished_at=time.time(),
            )
            self._release(job)
        if a_state == "abandoned":  # (after the commit: a cancel pass starting now must see it)
            self._note_abandoned(host or job.host)

    def _host_config_decision(self, job: JobRecord, exc: HostConfigError, host: str | None) -> Decision:
        """The host cannot run this workflow: exclude it, and run the job elsewhere at no cost.

        The attempt does not count against the job's budget (it says nothing about the job);
        the job is dead only when no host is left that could run it.
        """
        current = self._resolve_host(host) if host else None
        if current is not None:
            self._exclude_host(current, exc.message)
        self._free_attempts[job.job_id] = self._free_attempts.get(job.job_id, 0) + 1
        with self._lock:
            why = self.scheduler.why_unplaceable(job)
        if why is not None:
            return Decision(False, message=why)
        return Decision(True, delay=0.0, resolution=job.resolution, message=exc.message)

    def _unplaceable_kind(self) -> str:
        """error_kind of a job no host can take: excluded hosts make it a host problem, not a size one."""
        excluded = any(h.excluded is not None for h in self.scheduler.hosts.values())
        return "host_config" if excluded else "capability"

    def _exclude_host(self, host: str, message: str) -> None:
        """Stop routing this batch's jobs to ``host``; end the waiting jobs that no host can take now."""
        with self._lock:
            news = self.scheduler.exclude(host, message)
            stranded = self.scheduler.take_unplaceable() if news else []
            excluded = {
                name: self._redact(h.excluded)
                for name, h in self.scheduler.hosts.items()
                if h.excluded is not None
            }
            self._lock.notify_all()
        if not news:
            return
        self.journal.set_meta({"excluded_hosts": excluded})
        self._emit(
            {
                "event": "host",
                "host": host,
                "host_name": self.host_names.get(host),
                "healthy": False,
                "excluded": True,
                "error": self._redact(f"cannot run this workflow, no more jobs go there: {message}"),
            }
        )
        for job in stranded:
            self._enqueued_at.pop(job.job_id, None)
            why = self.scheduler.why_unplaceable(job) or f"no host can run it: {host}: {message}"
            self._move(job, J.DEAD, error=why, error_kind="host_config", finished_at=time.time())

    def _crashed(self, job: JobRecord, exc: Exception) -> None:
        """A bug in the runner (worker thread): log it and stop the batch; the job stays retryable."""
        self._runner_bug(exc, job)

    # ------------------------------------------------------------------ resume
    def _resolve_host(self, url: str) -> str | None:
        """The given host (its safe_url) that a journal's host URL means, or None if it is not given.

        The journal stores safe URLs; matching also tolerates spelling differences between runs
        (case of the host name, a trailing slash, an explicit default port), so the host keeps
        its headers (auth) on --resume.
        """
        if url in self.specs:
            return url
        return self._host_keys.get(_host_key(url))

    def _announce_missing_hosts(self, on_host: list[JobRecord]) -> None:
        """One line per journal host that holds in-flight jobs but is not given any more."""
        missing: dict[str, int] = {}
        for job in on_host:
            if job.host and self._resolve_host(job.host) is None:
                missing[job.host] = missing.get(job.host, 0) + 1
        for host, count in missing.items():
            grace = self.config.failover_grace
            self._emit(
                {
                    "event": "host",
                    "host": host,
                    "host_name": self.host_names.get(host),
                    "healthy": False,
                    "error": (
                        f"not among the given hosts any more; asking it (without headers) about its {count} "
                        f"in-flight job(s), which move to other hosts if it does not answer within "
                        f"{grace:g} s (--failover-grace)"
                    ),
                }
            )

    def _start_recovery(self, job: JobRecord) -> None:
        """A job that may exist on its host (resume): hold its host slot and ask the host first."""
        host = self._resolve_host(job.host) or job.host
        if host not in self.clients:
            # Not given any more: its headers are unknown. Ask it without them (a host that
            # answers is followed to the end); if it does not answer, the failover grace moves
            # the job elsewhere, exactly as for a host that went down.
            from .secrets import HostSpec

            self.clients[host] = self._client_factory(HostSpec(url=host))
        if host in self.scheduler.hosts:
            self.scheduler.hold(job.job_id, host)
        attempt = self.journal.attempt(job.job_id, job.attempts) or {}
        client_id = attempt.get("client_id") or uuid.uuid4().hex
        lost = TransientHostError("runner restarted; asking the host about the prompt", kind="restart")
        self._spawn(self._recover, job, host, client_id, lost)

    def _recover(self, job: JobRecord, host: str, client_id: str, lost: HostError) -> None:
        try:
            self._settle(job, self._executor(host).recover(job, client_id, lost))
        except Exception as exc:  # noqa: BLE001
            self._crashed(job, exc)

    # ------------------------------------------------------------------ hosts
    def _host_failed(self, host: str, exc: HostError) -> None:
        if host not in self.scheduler.hosts:
            return
        with self._lock:
            became = self.scheduler.mark_unhealthy(host, self._clock(), exc.message)
            self._lock.notify_all()
        if became:
            self._emit(
                {
                    "event": "host",
                    "host": host,
                    "host_name": self.host_names.get(host),
                    "healthy": False,
                    "error": self._redact(exc.message),
                }
            )

    def _host_ok(self, host: str) -> None:
        state = self.scheduler.hosts.get(host)
        if state is None:
            return
        state.last_ok = self._clock()  # (a float store: no lock needed)
        if host in self._cancel_pending and not self._settle_abandoned(host):
            return  # another thread is cancelling there; it marks the host healthy afterwards
        if state.healthy:
            return
        with self._lock:
            became = self.scheduler.mark_healthy(host)
            self._lock.notify_all()
        if became:
            self._emit(
                {
                    "event": "host",
                    "host": host,
                    "host_name": self.host_names.get(host),
                    "healthy": True,
                    "error": None,
                }
            )

    def _start_probe(self, host: str) -> None:
        """Ask an unhealthy host (backoff ran out) or an idle one (silent for a while) if it is up.

        Called with the lock held. The host gets no new work while the probe is in flight.
        """
        state = self.scheduler.hosts[host]
        if state.checking:
            return
        state.checking = True

        def probe() -> None:
            try:
                self.clients[host].system_stats()
            except HostError as exc:
                self._host_failed(host, exc)
            except Exception as exc:  # noqa: BLE001
                self._host_failed(host, TransientHostError(one_line(exc)))
            else:
                self._host_ok(host)
            finally:
                with self._lock:
                    state.checking = False
                    self._lock.notify_all()

        threading.Thread(target=probe, daemon=True).start()

    def _note_abandoned(self, host: str | None) -> None:
        """``host`` holds an abandoned attempt: cancel it there on the next successful contact."""
        name = self._resolve_host(host) if host else None
        if name is not None and name in self.scheduler.hosts:
            with self._lock:
                self._cancel_pending.add(name)

    def _settle_abandoned(self, host: str) -> bool:
        """Run the cancel pass for ``host`` unless another thread is running it (then False).

        A pass that could not finish (the host failed a call) leaves the host pending, so
        the next successful contact tries again.
        """
        with self._lock:
            if host in self._cancelling:
                return False
            if host not in self._cancel_pending:
                return True
            self._cancel_pending.discard(host)
            self._cancelling.add(host)
        settled = False
        try:
            settled = self._cancel_abandoned(host)
        finally:
            with self._lock:
                self._cancelling.discard(host)
                if not settled:
                    self._cancel_pending.add(host)
        return True

    def _cancel_abandoned(self, host: str) -> bool:
        """Stop every attempt moved away from ``host`` while it was unreachable; True once all are settled.

        Each one is asked about first (prompt_status): pending -> deleted from the queue (and
        asked again, it may have started meanwhile), running -> interrupted, done -> recorded
        as it ended ("done_duplicate" when it succeeded: the job ran twice, the report counts
        it), unknown -> "lost" (it never ran there, or the host restarted).
        """
        client = self.clients[host]
        for a in self.journal.attempts_in_state("abandoned"):
            if self._resolve_host(a["host"]) != host:
                continue
            prompt_id = a["prompt_id"]
            try:
                status = client.prompt_status(prompt_id)
                cancelled = False
                if status == "pending":
                    client.delete_queued([prompt_id])
                    status = client.prompt_status(prompt_id)
                    if status == "pending":
                        return False  # not removed (yet): try again on the next contact
                    cancelled = status == "unknown"
                if status == "running":
                    client.interrupt(prompt_id)
                    cancelled = True
                note = None
                if cancelled:
                    state = "cancelled"
                elif status == "done":
                    state, note = self._abandoned_outcome(client, host, prompt_id)
                else:
                    state = "lost"
                kind = "duplicate" if state == "done_duplicate" else None
                self.journal.set_attempt_state(a["job_id"], a["attempt"], state, error=note, error_kind=kind)
            except HostError:
                return False
        return True

    def _abandoned_outcome(self, client: Any, host: str, prompt_id: str) -> tuple[str, str | None]:
        """How an abandoned attempt that ended on its host ended: (attempt state, note)."""
        entry = client.history(prompt_id)
        if entry is None:  # its history was cleared meanwhile: nothing more to learn
            return "lost", None
        if entry_ok(entry):
            return "done_duplicate", (
                f"finished on {host} after the job had been moved to another attempt "
                "(it ran twice; these outputs were not fetched)"
            )
        from .host_errors import classify_execution_error

        error = classify_execution_error(entry.get("status") or {})
        if error.kind == "interrupted":
            return "cancelled", f"interrupted on {host} after the job had been moved to another attempt"
        return "failed", f"ended on {host} with an error after the job had moved on: {error.message}"


def _host_key(url: str) -> tuple:
    """A host URL reduced to what identifies the server: scheme, lower-case host, port, path."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
        return (scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/"), parts.query)
    except ValueError:
        return (url,)
