"""The batch journal: SQLite in WAL mode, written before anything it describes happens.

Why: ComfyUI keeps its queue in memory and a runner can be killed at any moment. If
every state change is committed *before* it takes effect (e.g. "submitted, prompt_id X"
before ``POST /prompt``), a restarted runner knows every prompt that may exist on a host
and can ask the host about it instead of submitting the job a second time.

Only ``HostSpec.safe_url`` (no userinfo, no headers) is ever stored for a host, and
error texts pass through a redaction function before they are written.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .jobs import ON_HOST_STATES, JobRecord, check_transition

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    row INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    prompt_id TEXT,
    resolution INTEGER,
    error TEXT,
    error_kind TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    notes TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    submitted_at REAL,
    started_at REAL,
    finished_at REAL,
    queued_seconds REAL NOT NULL DEFAULT 0,
    run_seconds REAL NOT NULL DEFAULT 0,
    download_seconds REAL NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, priority, row);
CREATE INDEX IF NOT EXISTS jobs_host ON jobs (host, state);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    client_id TEXT,
    resolution INTEGER,
    state TEXT NOT NULL,
    error TEXT,
    error_kind TEXT,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_prompt ON attempts (prompt_id);
CREATE INDEX IF NOT EXISTS attempts_host_state ON attempts (host, state);
CREATE INDEX IF NOT EXISTS attempts_state ON attempts (state);
"""

_JOB_COLUMNS = (
    "job_id",
    "row",
    "priority",
    "spec",
    "state",
    "attempts",
    "host",
    "prompt_id",
    "resolution",
    "error",
    "error_kind",
    "outputs",
    "notes",
    "created_at",
    "submitted_at",
    "started_at",
    "finished_at",
    "queued_seconds",
    "run_seconds",
    "download_seconds",
    "next_attempt_at",
)
_JSON_COLUMNS = {"spec", "outputs", "notes"}

#: Attempt states: on the host (submitted/running/fetching), ended (done/failed/dead),
#: "lost" (the host confirmed it does not have it), "abandoned" (moved elsewhere while the
#: host was unreachable: cancelled there first thing if that host comes back), then
#: "cancelled" (stopped there) or "done_duplicate" (it had finished there anyway: the
#: job ran twice, the report counts it).
ATTEMPT_LIVE_STATES = ("submitted", "running", "fetching")

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def strip_userinfo(text: str) -> str:
    """Remove ``user:pass@`` from any URL in ``text`` (defence in depth for host names)."""
    return _USERINFO.sub(r"\1", text)


class JournalError(RuntimeError):
    """The journal cannot be used as asked (wrong batch, missing file)."""


class Journal:
    """One batch's durable record. Thread-safe: all access goes through one lock."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "NORMAL",
        durable_submit: bool = True,
        redact: Callable[[str], str] | None = None,
        writer: bool = False,
    ) -> None:
        """``writer=True``: take the journal's writer lock first (JournalLockedError if another
        process holds it), before anything touches the file; it is released by ``close()``."""
        self.path = str(path)
        self._redact = redact or (lambda s: s)
        self._lock = threading.RLock()
        self._writer = WriterLock(path).acquire() if writer and self.path != ":memory:" else None
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode every commit survives kill -9 of the runner. A power cut can lose the
        # newest NORMAL commits, so the commit that must never be lost - "submitted, prompt_id"
        # before POST /prompt - is made FULL (fsync), which also flushes every earlier commit.
        # The other transitions can be re-derived by asking the host, and an fsync each would
        # cost ~3 ms per state change.
        self._sync = synchronous.upper()
        self._submit_sync = "FULL" if durable_submit else self._sync
        self._db.execute(f"PRAGMA synchronous={self._sync}")
        self._db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        with self._lock:
            self._db.close()
            self.release_writer()

    def release_writer(self) -> None:
        """Let another runner write to this journal (this one writes nothing more)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, synchronous: str | None = None):
        return _Transaction(
            self._db, self._lock, synchronous if synchronous != self._sync else None, self._sync
        )

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else strip_userinfo(self._redact(str(text)))

    # ------------------------------------------------------------------ meta
    def set_meta(self, values: dict[str, object]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def meta(self) -> dict[str, object]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    # ------------------------------------------------------------------ jobs
    def add_jobs(self, jobs: Iterable[JobRecord], meta: dict[str, object] | None = None) -> None:
        """Insert new jobs (and the batch meta) in ONE transaction: a kill leaves all or nothing.

        10,000 rows take a fraction of a second.
        """
        placeholders = ",".join("?" * len(_JOB_COLUMNS))
        sql = f"INSERT INTO jobs ({','.join(_JOB_COLUMNS)}) VALUES ({placeholders})"
        with self._tx() as db:
            if meta:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    [(k, json.dumps(v)) for k, v in meta.items()],
                )
            db.executemany(sql, (self._job_row(job) for job in jobs))

    def _job_row(self, job: JobRecord) -> tuple:
        values = []
        for col in _JOB_COLUMNS:
            value = getattr(job, col)
            if col in _JSON_COLUMNS:
                value = json.dumps(value)
            elif col == "error":
                value = self._clean(value)
            elif col == "host" and value is not None:
                value = strip_userinfo(value)
            values.append(value)
        return tuple(values)

    def jobs(self, states: Iterable[str] | None = None) -> list[JobRecord]:
        sql = f"SELECT {','.join(_JOB_COLUMNS)} FROM jobs"
        args: tuple = ()
        if states is not None:
            states = tuple(states)
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args = states
        sql += " ORDER BY row"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._record(r) for r in rows]

    def job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {','.join(_JOB_COLUMNS)} FROM jobs WHERE job_id=?", (job_id,)
            ).fetchone()
        return self._record(row) if row else None

    @staticmethod
    def _record(row: tuple) -> JobRecord:
        data = dict(zip(_JOB_COLUMNS, row, strict=False))
        for col in _JSON_COLUMNS:
            data[col] = json.loads(data[col])
        return JobRecord(**data)

    def transition(self, job: JobRecord, new_state: str, attempt_state: str | None = None, **changes) -> None:
        """Commit ``job`` moving to ``new_state`` (plus field changes), then apply it to ``job``.

        ``attempt_state`` also updates the current attempt's row in the same transaction.
        The in-memory record changes only after the commit succeeded.
        """
        check_transition(job.job_id, job.state, new_state)
        changes["state"] = new_state
        if "error" in changes:
            changes["error"] = self._clean(changes["error"])
        if "host" in changes and changes["host"] is not None:
            changes["host"] = strip_userinfo(changes["host"])
        sets = ",".join(f"{k}=?" for k in changes)
        values = [json.dumps(v) if k in _JSON_COLUMNS else v for k, v in changes.items()]
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE job_id=?", (*values, job.job_id))
            if attempt_state is not None and job.attempts > 0:
                self._update_attempt(db, job.job_id, job.attempts, attempt_state, changes)
        for k, v in changes.items():
            setattr(job, k, v)

    def start_attempt(
        self, job: JobRecord, host: str, prompt_id: str, client_id: str, resolution: int | None
    ) -> None:
        """Record a new attempt as "submitted" - call this BEFORE POST /prompt."""
        check_transition(job.job_id, job.state, "submitted")
        host = strip_userinfo(host)
        now = time.time()
        attempt = job.attempts + 1
        with self._tx(self._submit_sync) as db:
            db.execute(
                "INSERT INTO attempts (job_id, attempt, host, prompt_id, client_id, resolution, state,"
                " submitted_at) VALUES (?,?,?,?,?,?,?,?)",
                (job.job_id, attempt, host, prompt_id, client_id, resolution, "submitted", now),
            )
            db.execute(
                "UPDATE jobs SET state='submitted', attempts=?, host=?, prompt_id=?, resolution=?,"
                " submitted_at=?, error=NULL, error_kind=NULL WHERE job_id=?",
                (attempt, host, prompt_id, resolution, now, job.job_id),
            )
        job.state, job.attempts, job.host, job.prompt_id = "submitted", attempt, host, prompt_id
        job.resolution, job.submitted_at, job.error, job.error_kind = resolution, now, None, None

    def record_unsent_attempt(self, job: JobRecord, host: str, error: str, error_kind: str) -> None:
        """Record an attempt that failed before POST /prompt (upload, unreadable input) as "failed".

        Nothing of it exists on a host (empty prompt_id), but it counts against the job's
        attempts - also after a resume - and the report lists it with its host and error.
        The job's own state is left to the following ``transition``.
        """
        host = strip_userinfo(host)
        now = time.time()
        attempt = job.attempts + 1
        with self._tx() as db:
            db.execute(
                "INSERT INTO attempts (job_id, attempt, host, prompt_id, client_id, resolution, state, error,"
                " error_kind, submitted_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.job_id,
                    attempt,
                    host,
                    "",
                    None,
                    job.resolution,
                    "failed",
                    self._clean(error),
                    error_kind,
                    now,
                    now,
                ),
            )
            db.execute("UPDATE jobs SET attempts=? WHERE job_id=?", (attempt, job.job_id))
        job.attempts = attempt

    def _update_attempt(self, db, job_id: str, attempt: int, state: str, changes: dict) -> None:
        now = time.time()
        fields = {"state": state}
        if state == "running":
            fields["started_at"] = changes.get("started_at", now)
        if state not in ATTEMPT_LIVE_STATES:
            fields["finished_at"] = now
        if "error" in changes:
            fields["error"] = changes["error"]
        if "error_kind" in changes:
            fields["error_kind"] = changes["error_kind"]
        sets = ",".join(f"{k}=?" for k in fields)
        db.execute(
            f"UPDATE attempts SET {sets} WHERE job_id=? AND attempt=?", (*fields.values(), job_id, attempt)
        )

    def set_attempt_state(
        self, job_id: str, attempt: int, state: str, error: str | None = None, error_kind: str | None = None
    ) -> None:
        """Change only an attempt's row (e.g. an abandoned attempt later confirmed gone)."""
        changes: dict[str, object] = {} if error is None else {"error": self._clean(error)}
        if error_kind is not None:
            changes["error_kind"] = error_kind
        with self._tx() as db:
            self._update_attempt(db, job_id, attempt, state, changes)

    def attempts(self, job_id: str | None = None) -> list[dict]:
        sql = (
            "SELECT job_id, attempt, host, prompt_id, client_id, resolution, state, error, error_kind,"
            " submitted_at, started_at, finished_at FROM attempts"
        )
        args: tuple = ()
        if job_id is not None:
            sql += " WHERE job_id=?"
            args = (job_id,)
        sql += " ORDER BY job_id, attempt"
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=False)) for r in cur.fetchall()]

    def abandoned_attempts(self) -> list[dict]:
        """Attempts moved away from an unreachable host: cancel them if it comes back."""
        return [a for a in self.attempts_in_state("abandoned")]

    def attempts_in_state(self, state: str) -> list[dict]:
        with self._lock:
            cur = self._db.execute(
                "SELECT job_id, attempt, host, prompt_id, client_id, state FROM attempts WHERE state=?",
                (state,),
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=False)) for r in cur.fetchall()]

    def attempt_counts(self, error_kind: str) -> dict[str, int]:
        """job_id -> how many of its attempts ended with ``error_kind`` (one indexed-free scan)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, COUNT(*) FROM attempts WHERE error_kind=? GROUP BY job_id", (error_kind,)
            ).fetchall()
        return dict(rows)

    def attempt(self, job_id: str, attempt: int) -> dict | None:
        rows = [a for a in self.attempts(job_id) if a["attempt"] == attempt]
        return rows[0] if rows else None

    # ------------------------------------------------------------------ summaries
    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return dict(rows)

    def counts_by_host(self) -> dict[str, dict[str, int]]:
        """host -> {attempt state -> count} over every attempt ever made."""
        with self._lock:
            rows = self._db.execute(
                "SELECT host, state, COUNT(*) FROM attempts GROUP BY host, state ORDER BY host"
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for host, state, n in rows:
            out.setdefault(host, {})[state] = n
        return out

    def on_host_jobs(self) -> list[JobRecord]:
        """Jobs whose current attempt may exist on a host (to be asked about on resume)."""
        return self.jobs(ON_HOST_STATES)


class _Transaction:
    """``with`` block = one IMMEDIATE transaction under the journal's lock."""

    def __init__(
        self, db: sqlite3.Connection, lock: threading.RLock, synchronous: str | None, default: str
    ) -> None:
        self._db, self._lock, self._sync, self._default = db, lock, synchronous, default

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            if self._sync:  # (a pragma cannot change inside a transaction)
                self._db.execute(f"PRAGMA synchronous={self._sync}")
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
            if self._sync:
                self._db.execute(f"PRAGMA synchronous={self._default}")
        finally:
            self._lock.release()


def open_existing(path: Path | str, **kwargs) -> Journal:
    """Open a journal that must already exist (status/report/resume)."""
    if not Path(path).is_file():
        raise JournalError(
            f"journal {path}: no such file; pass the journal of a batch (default OUT/journal.sqlite)"
        )
    _check_is_journal(Path(path))
    return Journal(path, **kwargs)


class JournalLockedError(JournalError):
    """Another live process holds the journal's writer lock."""


class WriterLock:
    """One writer per journal: an OS lock on ``<journal>.lock``, held for the runner's life.

    Why an OS lock (``fcntl.flock``; ``msvcrt.locking`` on Windows) rather than a PID file:
    the kernel releases it when the holder exits in any way, kill -9 included, so a stale
    lock never blocks a ``--resume``. The holder's PID is written into the file only to
    name it in the refusal. Readers (``status``, ``report``) never take it.
    """

    def __init__(self, journal_path: Path | str) -> None:
        self.journal_path = Path(journal_path)
        self.path = self.journal_path.with_name(self.journal_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock or raise JournalLockedError at once (never waits)."""
        import os

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_fd(fd)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise JournalLockedError(
                f"journal {self.journal_path} is in use by {who} (another runner writes to it); "
                "wait for it to end or stop it, then run again with --resume"
            ) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        import os

        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # (closing the descriptor releases the lock)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_pid(fd: int) -> int | None:
    import os

    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:  # pragma: no cover - Windows locks the byte range
        return None


def _check_is_journal(path: Path) -> None:
    """Refuse a file that is not a batch journal before Journal() would add our tables to it."""
    problem = None
    try:
        with path.open("rb") as f:
            is_sqlite = f.read(16) == b"SQLite format 3\x00"
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot read it ({exc.strerror or exc})") from None
    if not is_sqlite:
        problem = "not a journal (not an SQLite file)"
    else:
        db = sqlite3.connect(path, timeout=30)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "jobs"} <= tables:
                problem = "an SQLite file but not a sonic-runner journal (no jobs table)"
        except sqlite3.DatabaseError as exc:
            problem = f"not a readable journal ({exc})"
        finally:
            db.close()
    if problem:
        raise JournalError(
            f"journal {path}: {problem}; pass the journal.sqlite a batch wrote (default OUT/journal.sqlite)"
        )
