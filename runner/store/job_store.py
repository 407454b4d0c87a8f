"""``JobStore``: the journal's records and guarantees on SQLAlchemy, safe for many writers.

One process (the local journal) can serialise its writes with a lock. Several workers and
submitters on several machines cannot, so every change here is a compare-and-set: a job
moves only from the state (and attempt number) the caller last saw, and an attempt row
``(job_id, attempt)`` can be inserted once. The loser of a race gets ``StaleJob`` /
``AttemptTaken`` and re-reads, instead of both running the job.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import create_engine, event, func, insert, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError, OperationalError, SQLAlchemyError

from ..jobs import (
    FAILED,
    FINAL_STATES,
    IN_FLIGHT_STATES,
    ON_HOST_STATES,
    QUEUED,
    STATES,
    UPLOADING,
    JobRecord,
    check_transition,
)
from ..journal import ATTEMPT_LIVE_STATES, strip_userinfo
from . import migrate
from .schema import attempts as attempts_t
from .schema import events as events_t
from .schema import jobs as jobs_t
from .schema import meta as meta_t

#: uuid5 namespace of attempt prompt ids (fixed forever: changing it would make a
#: redelivered job look unknown to the host that already runs it).
_PROMPT_NAMESPACE = uuid.UUID("6f1c2a57-3b7e-4c55-9a51-5d1f0e2b7c11")

#: Columns of the store's own bookkeeping, not of the job model (JobRecord).
_STORE_ONLY = ("batch", "owner", "worker", "lease_until", "published_at")
#: The holder name of a job re-published because its worker's lease ran out.
REAPER = "(reaper)"
#: PostgreSQL advisory lock key held while checking / migrating the schema.
_MIGRATION_LOCK = 0x50_4E_49_43  # "SONIC"-ish; any fixed 64-bit number
#: A pooled connection idle longer than this is pinged before use (see _engine).
PING_AFTER_IDLE_S = 10.0
_JOB_COLUMNS = tuple(c.name for c in jobs_t.columns if c.name not in _STORE_ONLY)
_ATTEMPT_COLUMNS = tuple(c.name for c in attempts_t.columns)


class StoreError(RuntimeError):
    """The database cannot be used (unreachable, newer schema): one line for the user."""


class StaleJob(RuntimeError):
    """Another process changed the job first; re-read it before deciding again."""


class AttemptTaken(RuntimeError):
    """That attempt number of the job was already started (by another worker or a redelivery)."""


def attempt_prompt_id(job_id: str, attempt: int) -> str:
    """The prompt id of attempt ``attempt`` of ``job_id``: the same in every process.

    A message redelivered by the broker therefore names a prompt id the host may already
    know, and the worker asks the host about it before it submits anything.
    """
    return str(uuid.uuid5(_PROMPT_NAMESPACE, f"{job_id}#{attempt}"))


def state_data(job: JobRecord, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a "state" event says of a job (after ``changes``): followers show it as it is."""
    values = {**job.__dict__, **(changes or {})}
    state = values["state"]
    return {
        "state": "cancelled" if state == "dead" and values.get("error_kind") == "cancelled" else state,
        "host": values.get("host"),
        "attempt": values.get("attempts"),
        "row": values.get("row"),
        "error": values.get("error"),
        "error_kind": values.get("error_kind"),
        "outputs": list(values.get("outputs") or []),
    }


def _select_jobs():
    """SELECT of the columns a JobRecord holds (not the store's own bookkeeping)."""
    return select(*(jobs_t.c[c] for c in _JOB_COLUMNS))


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # pragma: no cover - trivial
            # IMMEDIATE: take the write lock at BEGIN, so two writers queue on busy_timeout
            # instead of one failing with "database is locked" when it upgrades its lock.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Connections are opened on demand and kept up to pool_size: an API replica's thread pool
    # runs ~10 requests at once under load, and a connection opened past the pool is closed
    # again when returned (a PostgreSQL backend started and ended per burst: ~3 ms of CPU each).
    engine = create_engine(url, pool_size=12, max_overflow=8)

    # A connection back from a request is fine moments later: ping only one that sat idle (a
    # restarted server or a dropped idle connection), not on every checkout as pool_pre_ping
    # does, a round trip that was a fifth of an API submission's database time. A server that
    # goes away under load fails the statements in flight once; SQLAlchemy then renews the pool.
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) <= PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - the pool replaces the connection and tries again
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc

    return engine


def _describe(url: str) -> str:
    """The URL without its password, for error lines."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used for a message
        return "<database url>"


class JobStore:
    """The jobs, attempts and events of every batch, in one database."""

    def __init__(
        self,
        url: str,
        *,
        redact: Callable[[str], str] | None = None,
        upgrade: bool = True,
        record_events: bool = False,
    ) -> None:
        """``record_events``: every state change also appends a "state" event in the same
        transaction (fleet workers: followers read them; one round trip instead of two)."""
        self.url = _describe(url)
        self._record_events = record_events
        self._redact = redact or (lambda s: s)
        self._engine = _engine(url)
        # One-statement reads need no transaction: on PostgreSQL they run in autocommit, which
        # saves the BEGIN and ROLLBACK round trips (SQLite's engine begins its own way, above).
        self._reads = (
            self._engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._engine.dialect.name == "postgresql"
            else self._engine
        )
        try:
            with self._engine.begin() as conn:
                self._check_schema(conn, upgrade)
        except OperationalError as exc:
            self._engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreError(
                f"database {self.url} is unreachable ({reason}); check --db and that the server is up"
            ) from None

    def _check_schema(self, conn: Connection, upgrade: bool) -> None:
        if conn.dialect.name == "postgresql":
            # Workers and API replicas start together: one migrates, the others wait here and
            # then find the schema current. (SQLite's BEGIN IMMEDIATE serialises them already.)
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        head, current = migrate.head_revision(), migrate.current_revision(conn)
        if current == head:
            return
        if current is not None and current not in migrate.known_revisions():
            raise StoreError(
                f"database {self.url} has schema revision {current}, newer than this runner's {head}; "
                "upgrade sonic-runner"
            )
        if not upgrade:
            raise StoreError(
                f"database {self.url} is at schema {current}, not {head}; run a worker to migrate"
            )
        migrate.upgrade(conn)

    # ------------------------------------------------------------------ basics
    @property
    def records_events(self) -> bool:
        return self._record_events

    @property
    def engine(self) -> Engine:
        """For the store's other tables (the webhook outbox) on the same database."""
        return self._engine

    def reading(self) -> Connection:
        """A connection for one read statement (``with store.reading() as conn``): no transaction
        on PostgreSQL. A read of several statements that must agree uses ``engine.begin()``."""
        return self._reads.connect()

    @property
    def dialect(self):
        """``insert`` of this database's dialect (for its ON CONFLICT clauses)."""
        return postgresql if self._engine.dialect.name == "postgresql" else sqlite

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else strip_userinfo(self._redact(str(text)))

    def _insert(self, table):
        return self.dialect.insert(table)

    # ------------------------------------------------------------------ meta
    def set_meta(self, values: dict[str, object]) -> None:
        with self._engine.begin() as conn:
            self._upsert_meta(conn, values)

    def _upsert_meta(self, conn: Connection, values: dict[str, object]) -> None:
        for key, value in values.items():
            stmt = self._insert(meta_t).values(key=key, value=value)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    def meta(self) -> dict[str, object]:
        with self.reading() as conn:
            return {k: v for k, v in conn.execute(select(meta_t.c.key, meta_t.c.value))}

    # ------------------------------------------------------------------ jobs
    def add_jobs(
        self,
        jobs: Iterable[JobRecord],
        meta: dict[str, object] | None = None,
        *,
        batch: str = "",
        owner: str | None = None,
        skip_existing: bool = False,
        state_events: bool = False,
    ) -> int:
        """Insert jobs (and meta) in one transaction; return how many rows were new.

        ``skip_existing``: a job id already in the store is left as it is, so publishing the
        same manifest twice never makes a second job (job ids are stable).
        ``state_events``: each new job's first "state" event is written in the same transaction
        (the API: a follower sees the job queued from its first read; one commit, not two).
        """
        rows = [self._job_row(job, batch, owner) for job in jobs]
        with self._engine.begin() as conn:
            if meta:
                self._upsert_meta(conn, meta)
            if not rows:
                return 0
            stmt = self._insert(jobs_t)
            if skip_existing:
                stmt = stmt.on_conflict_do_nothing(index_elements=["job_id"])
            stmt = stmt.returning(jobs_t.c.job_id)  # (rowcount is unreliable for executemany)
            inserted: list[str] = []
            for start in range(0, len(rows), 1000):
                inserted += [r[0] for r in conn.execute(stmt, rows[start : start + 1000])]
            if state_events and inserted:
                state = {row["job_id"]: row["state"] for row in rows}
                now = time.time()
                events = [
                    {"job_id": i, "at": now, "kind": "state", "data": {"state": state[i]}} for i in inserted
                ]
                conn.execute(insert(events_t), events)
            return len(inserted)

    def _job_row(self, job: JobRecord, batch: str, owner: str | None) -> dict[str, Any]:
        row = {col: getattr(job, col) for col in _JOB_COLUMNS}
        row["error"] = self._clean(row["error"])
        if row["host"] is not None:
            row["host"] = strip_userinfo(row["host"])
        row["batch"], row["owner"] = batch, owner
        return row

    def _read_jobs(self, stmt) -> list[JobRecord]:
        with self.reading() as conn:
            return [JobRecord(**dict(r._mapping)) for r in conn.execute(stmt)]

    def jobs(
        self,
        states: Iterable[str] | None = None,
        *,
        batch: str | None = None,
        owner: str | None = None,
        since: float | None = None,
        limit: int | None = None,
        by_priority: bool = False,
    ) -> list[JobRecord]:
        stmt = _select_jobs()
        if owner is not None:
            stmt = stmt.where(jobs_t.c.owner == owner)
        if since is not None:
            stmt = stmt.where(jobs_t.c.created_at >= since)
        if limit is not None:
            stmt = stmt.limit(limit)
        if states is not None:
            stmt = stmt.where(jobs_t.c.state.in_(tuple(states)))
        if batch is not None:
            stmt = stmt.where(jobs_t.c.batch == batch)
        if by_priority:  # the most urgent first, oldest first within a priority
            stmt = stmt.order_by(jobs_t.c.priority, jobs_t.c.created_at, jobs_t.c.job_id)
        else:
            stmt = stmt.order_by(jobs_t.c.row, jobs_t.c.job_id)
        return self._read_jobs(stmt)

    def job(self, job_id: str, *, owner: str | None = None) -> JobRecord | None:
        """The job, or None; with ``owner``, None too when another key owns it (ids do not leak)."""
        stmt = _select_jobs().where(jobs_t.c.job_id == job_id)
        if owner is not None:
            stmt = stmt.where(jobs_t.c.owner == owner)
        with self.reading() as conn:
            row = conn.execute(stmt).first()
        return JobRecord(**dict(row._mapping)) if row else None

    def transition(self, job: JobRecord, new_state: str, attempt_state: str | None = None, **changes) -> None:
        """Commit ``job`` moving to ``new_state`` if nobody moved it since it was read.

        Raises ``StaleJob`` (and changes nothing) when the row's state or attempt number is
        no longer what ``job`` says; ``job`` itself changes only after the commit.
        """
        check_transition(job.job_id, job.state, new_state)
        changes["state"] = new_state
        if "error" in changes:
            changes["error"] = self._clean(changes["error"])
        if changes.get("host") is not None:
            changes["host"] = strip_userinfo(changes["host"])
        with self._engine.begin() as conn:
            self._compare_and_set(conn, job, changes)
            if attempt_state is not None and job.attempts > 0:
                self._update_attempt(conn, job.job_id, job.attempts, attempt_state, changes)
        for key, value in changes.items():
            setattr(job, key, value)

    def start_attempt(
        self, job: JobRecord, host: str, prompt_id: str, client_id: str, resolution: int | None
    ) -> None:
        """Record attempt ``job.attempts + 1`` as submitted: call BEFORE ``POST /prompt``.

        Raises ``AttemptTaken`` when that attempt was started already (a redelivered message
        or a second worker): the caller then follows the existing attempt instead.
        """
        check_transition(job.job_id, job.state, "submitted")
        host = strip_userinfo(host)
        now, attempt = time.time(), job.attempts + 1
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(attempts_t).values(
                        job_id=job.job_id,
                        attempt=attempt,
                        host=host,
                        prompt_id=prompt_id,
                        client_id=client_id,
                        resolution=resolution,
                        state="submitted",
                        submitted_at=now,
                    )
                )
                self._compare_and_set(
                    conn,
                    job,
                    {
                        "state": "submitted",
                        "attempts": attempt,
                        "host": host,
                        "prompt_id": prompt_id,
                        "resolution": resolution,
                        "submitted_at": now,
                        "error": None,
                        "error_kind": None,
                    },
                )
        except IntegrityError:
            raise AttemptTaken(f"job {job.job_id}: attempt {attempt} was already started") from None
        job.state, job.attempts, job.host, job.prompt_id = "submitted", attempt, host, prompt_id
        job.resolution, job.submitted_at, job.error, job.error_kind = resolution, now, None, None

    def record_unsent_attempt(self, job: JobRecord, host: str, error: str, error_kind: str) -> None:
        """Record an attempt that failed before ``POST /prompt`` (an upload refused, an input that
        cannot be fetched) as "failed", and count it in the job's attempts.

        Counted, the retry policy's limit and backoff apply to it: uncounted, a host that answers
        its probe but refuses every upload retried each job at "attempt 1" forever, never dead,
        never reported. Nothing of it exists on a host (empty prompt_id). The job's own state
        is left to the following ``transition``.
        """
        host = strip_userinfo(host)
        now, attempt = time.time(), job.attempts + 1
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(attempts_t).values(
                        job_id=job.job_id,
                        attempt=attempt,
                        host=host,
                        prompt_id="",
                        resolution=job.resolution,
                        state="failed",
                        error=self._clean(error),
                        error_kind=error_kind,
                        submitted_at=now,
                        finished_at=now,
                    )
                )
                self._compare_and_set(conn, job, {"attempts": attempt})
        except IntegrityError:
            raise StaleJob(f"job {job.job_id}: attempt {attempt} was recorded by another worker") from None
        job.attempts = attempt

    def _compare_and_set(self, conn: Connection, job: JobRecord, values: dict[str, Any]) -> None:
        """Write ``values`` to the job's row only if it is still as ``job`` saw it, else StaleJob."""
        result = conn.execute(
            update(jobs_t)
            .where(
                jobs_t.c.job_id == job.job_id,
                jobs_t.c.state == job.state,
                jobs_t.c.attempts == job.attempts,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise StaleJob(f"job {job.job_id} changed since it was read (expected {job.state})")
        if self._record_events and "state" in values:
            conn.execute(
                insert(events_t).values(
                    job_id=job.job_id, at=time.time(), kind="state", data=state_data(job, values)
                )
            )

    def _update_attempt(self, conn: Connection, job_id: str, attempt: int, state: str, changes: dict) -> None:
        now = time.time()
        fields: dict[str, Any] = {"state": state}
        if state == "running":
            fields["started_at"] = changes.get("started_at", now)
        if state not in ATTEMPT_LIVE_STATES:
            fields["finished_at"] = now
        for key in ("error", "error_kind"):
            if key in changes:
                fields[key] = changes[key]
        conn.execute(
            update(attempts_t)
            .where(attempts_t.c.job_id == job_id, attempts_t.c.attempt == attempt)
            .values(**fields)
        )

    def set_attempt_state(
        self, job_id: str, attempt: int, state: str, error: str | None = None, error_kind: str | None = None
    ) -> None:
        """Change only an attempt's row (e.g. an abandoned attempt later confirmed gone)."""
        changes: dict[str, object] = {} if error is None else {"error": self._clean(error)}
        if error_kind is not None:
            changes["error_kind"] = error_kind
        with self._engine.begin() as conn:
            self._update_attempt(conn, job_id, attempt, state, changes)

    # ------------------------------------------------------------------ fleet leases
    def take(self, job: JobRecord, worker: str, lease_s: float, **changes) -> None:
        """Move a waiting job (queued, or failed and due for a retry) to "uploading" for ``worker``.

        The compare-and-set makes one worker the holder even when two got a message for the
        job; the lease says until when the holder is presumed alive (it renews it).
        """
        if job.state == FAILED:
            check_transition(job.job_id, FAILED, QUEUED)
            check_transition(job.job_id, QUEUED, UPLOADING)
        else:
            check_transition(job.job_id, job.state, UPLOADING)
        values = {**changes, "state": UPLOADING, "worker": worker, "lease_until": time.time() + lease_s}
        with self._engine.begin() as conn:
            self._compare_and_set(conn, job, values)
        job.state = UPLOADING
        for key, value in changes.items():
            setattr(job, key, value)

    def take_over(self, job: JobRecord, worker: str, lease_s: float) -> bool:
        """Hold an in-flight job whose holder's lease has run out (or that ``worker`` holds).

        False while another worker's lease is alive: that worker still follows the job, and
        its own message is still unacknowledged, so nothing is lost by leaving it alone.
        """
        now = time.time()
        free = (
            (jobs_t.c.worker == worker)
            | (jobs_t.c.worker == REAPER)
            | jobs_t.c.lease_until.is_(None)
            | (jobs_t.c.lease_until < now)
        )
        return self._set_holder(job, free, worker, now + lease_s)

    def _set_holder(self, job: JobRecord, condition, worker: str, until: float) -> bool:
        """Make ``worker`` the job's holder until ``until`` if the row is as ``job`` saw it and ``condition``."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(jobs_t)
                .where(
                    jobs_t.c.job_id == job.job_id,
                    jobs_t.c.state == job.state,
                    jobs_t.c.attempts == job.attempts,
                    condition,
                )
                .values(worker=worker, lease_until=until)
            )
        return result.rowcount == 1

    def mark_reaped(self, job: JobRecord, expired_before: float, hold_s: float) -> bool:
        """Whether this caller is the one to re-publish a job whose holder's lease ran out.

        The row is marked held by ``REAPER`` for ``hold_s``: other reapers leave it alone for
        that long, and the worker that gets the message may take it over at once.
        """
        return self._set_holder(job, jobs_t.c.lease_until < expired_before, REAPER, time.time() + hold_s)

    def renew(self, worker: str, job_ids: Iterable[str], lease_s: float) -> int:
        """Extend ``worker``'s leases on ``job_ids``; returns how many it still holds."""
        ids = list(job_ids)
        if not ids:
            return 0
        with self._engine.begin() as conn:
            result = conn.execute(
                update(jobs_t)
                .where(jobs_t.c.job_id.in_(ids), jobs_t.c.worker == worker)
                .values(lease_until=time.time() + lease_s)
            )
        return int(result.rowcount or 0)

    def release(self, job_id: str, worker: str) -> None:
        """Give up ``worker``'s lease at once (a worker handing a job back on SIGTERM)."""
        with self._engine.begin() as conn:
            conn.execute(
                update(jobs_t)
                .where(jobs_t.c.job_id == job_id, jobs_t.c.worker == worker)
                .values(lease_until=0.0)
            )

    def holder(self, job_id: str) -> tuple[str | None, float | None]:
        """(worker, lease_until) of a job: who holds it and until when."""
        stmt = select(jobs_t.c.worker, jobs_t.c.lease_until).where(jobs_t.c.job_id == job_id)
        with self.reading() as conn:
            row = conn.execute(stmt).first()
        return (row[0], row[1]) if row else (None, None)

    def expired_leases(
        self, now: float | None = None, limit: int = 500, holder_prefix: str | None = None
    ) -> list[tuple[JobRecord, str]]:
        """(job, batch) of in-flight jobs whose holder stopped renewing: the reaper re-publishes them.

        ``holder_prefix``: only jobs whose last holder's name starts with it (the embedded workers
        of ``serve`` look after their own kind only).
        """
        now = time.time() if now is None else now
        stmt = (
            select(jobs_t.c.batch, *(jobs_t.c[c] for c in _JOB_COLUMNS))
            .where(jobs_t.c.state.in_(tuple(IN_FLIGHT_STATES)), jobs_t.c.lease_until < now)
            .limit(limit)
        )
        if holder_prefix is not None:
            stmt = stmt.where(jobs_t.c.worker.startswith(holder_prefix, autoescape=True))
        with self.reading() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        return [(JobRecord(**{k: v for k, v in r.items() if k != "batch"}), r["batch"]) for r in rows]

    def mark_published(self, job_ids: Iterable[str], at: float | None = None) -> None:
        """Record that the broker confirmed these jobs' messages."""
        ids, at = list(job_ids), time.time() if at is None else at
        with self._engine.begin() as conn:
            for start in range(0, len(ids), 1000):
                conn.execute(
                    update(jobs_t)
                    .where(jobs_t.c.job_id.in_(ids[start : start + 1000]))
                    .values(published_at=at)
                )

    def never_published(self, created_before: float, limit: int = 500) -> list[JobRecord]:
        """Queued jobs of any batch or client whose message was never confirmed (a publisher or an
        API replica died between storing the job and publishing it)."""
        stmt = (
            _select_jobs()
            .where(
                jobs_t.c.state == QUEUED,
                jobs_t.c.published_at.is_(None),
                jobs_t.c.created_at < created_before,
            )
            .limit(limit)
        )
        return self._read_jobs(stmt)

    def is_published(self, job_id: str) -> bool:
        stmt = select(jobs_t.c.published_at).where(jobs_t.c.job_id == job_id)
        with self.reading() as conn:
            return conn.execute(stmt).scalar() is not None

    def unpublished(self, batch: str) -> list[JobRecord]:
        """Waiting jobs of ``batch`` whose message was never confirmed (a publisher killed mid-way)."""
        stmt = (
            _select_jobs()
            .where(
                jobs_t.c.batch == batch,
                jobs_t.c.state.in_((QUEUED, FAILED)),
                jobs_t.c.published_at.is_(None),
            )
            .order_by(jobs_t.c.row)
        )
        return self._read_jobs(stmt)

    # ------------------------------------------------------------------ attempts
    def attempts(self, job_id: str | None = None) -> list[dict]:
        stmt = select(*(attempts_t.c[c] for c in _ATTEMPT_COLUMNS))
        if job_id is not None:
            stmt = stmt.where(attempts_t.c.job_id == job_id)
        stmt = stmt.order_by(attempts_t.c.job_id, attempts_t.c.attempt)
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def attempt(self, job_id: str, attempt: int) -> dict | None:
        rows = [a for a in self.attempts(job_id) if a["attempt"] == attempt]
        return rows[0] if rows else None

    def attempts_in_state(self, state: str) -> list[dict]:
        cols = ("job_id", "attempt", "host", "prompt_id", "client_id", "state")
        stmt = select(*(attempts_t.c[c] for c in cols)).where(attempts_t.c.state == state)
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def abandoned_attempts(self) -> list[dict]:
        """Attempts moved away from an unreachable host: cancel them if it comes back."""
        return self.attempts_in_state("abandoned")

    def attempt_counts(self, error_kind: str, job_id: str | None = None) -> dict[str, int]:
        """job_id -> how many of its attempts ended with ``error_kind`` (of one job, if given)."""
        stmt = select(attempts_t.c.job_id, func.count()).where(attempts_t.c.error_kind == error_kind)
        if job_id is not None:
            stmt = stmt.where(attempts_t.c.job_id == job_id)
        stmt = stmt.group_by(attempts_t.c.job_id)
        with self.reading() as conn:
            return {job_id: n for job_id, n in conn.execute(stmt)}

    # ------------------------------------------------------------------ events
    def add_event(self, job_id: str, kind: str, data: dict | None = None) -> int:
        """Append a progress / state event for followers (API, ``batch``); returns its id."""
        with self._engine.begin() as conn:
            result = conn.execute(
                insert(events_t).values(job_id=job_id, at=time.time(), kind=kind, data=data or {})
            )
            return int(result.inserted_primary_key[0])

    def events(
        self, job_id: str | None = None, after: int = 0, limit: int = 1000, *, prefix: str | None = None
    ) -> list[dict]:
        """Events with id > ``after``, oldest first (a follower passes the last id it saw).

        ``prefix``: only jobs whose id starts with it (a fleet batch's jobs share one).
        """
        stmt = select(events_t).where(events_t.c.id > after)
        if job_id is not None:
            stmt = stmt.where(events_t.c.job_id == job_id)
        if prefix is not None:
            stmt = stmt.where(events_t.c.job_id.startswith(prefix, autoescape=True))
        stmt = stmt.order_by(events_t.c.id).limit(limit)
        with self.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever worker holds the job to stop it (it checks while it renews its lease)."""
        self.add_event(job_id, "cancel_requested", {})

    def cancel_requested(self, job_ids: Iterable[str]) -> set[str]:
        """Which of ``job_ids`` a client asked to cancel."""
        ids = list(job_ids)
        if not ids:
            return set()
        stmt = select(events_t.c.job_id).where(
            events_t.c.job_id.in_(ids), events_t.c.kind == "cancel_requested"
        )
        with self.reading() as conn:
            return {row[0] for row in conn.execute(stmt)}

    # ------------------------------------------------------------------ summaries
    def counts(
        self, *, batch: str | None = None, owner: str | None = None, since: float | None = None
    ) -> dict[str, int]:
        stmt = select(jobs_t.c.state, func.count()).group_by(jobs_t.c.state)
        if since is not None:
            stmt = stmt.where(jobs_t.c.created_at >= since)
        if batch is not None:
            stmt = stmt.where(jobs_t.c.batch == batch)
        if owner is not None:
            stmt = stmt.where(jobs_t.c.owner == owner)
        with self.reading() as conn:
            return {state: n for state, n in conn.execute(stmt)}

    def owner_load(self, owner: str, since: float, *, recent_cap: int, open_cap: int) -> tuple[int, int]:
        """(jobs ``owner`` created since ``since``, its unfinished jobs), each counted up to its cap.

        What an API key's limits need on every submission, in one round trip: both counts stop at
        the limit (a LIMIT under each COUNT), and each walks an index of its own (owner, created_at)
        and (owner, state), so the cost does not grow with the key's history of finished jobs.
        """
        open_states = tuple(s for s in STATES if s not in FINAL_STATES)

        def capped(condition, cap: int):
            rows = select(literal_column("1")).where(jobs_t.c.owner == owner, condition).limit(max(0, cap))
            return select(func.count()).select_from(rows.subquery()).scalar_subquery()

        stmt = select(
            capped(jobs_t.c.created_at >= since, recent_cap),
            capped(jobs_t.c.state.in_(open_states), open_cap),
        )
        with self.reading() as conn:
            recent, unfinished = conn.execute(stmt).one()
        return int(recent), int(unfinished)

    def counts_by_host(self) -> dict[str, dict[str, int]]:
        """host -> {attempt state -> count} over every attempt ever made."""
        stmt = (
            select(attempts_t.c.host, attempts_t.c.state, func.count())
            .group_by(attempts_t.c.host, attempts_t.c.state)
            .order_by(attempts_t.c.host)
        )
        out: dict[str, dict[str, int]] = {}
        with self.reading() as conn:
            for host, state, n in conn.execute(stmt):
                out.setdefault(host, {})[state] = n
        return out

    def on_host_jobs(self) -> list[JobRecord]:
        """Jobs whose current attempt may exist on a host (to be asked about on resume)."""
        return self.jobs(ON_HOST_STATES)

    def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers (for readiness checks)."""
        try:
            with self.reading() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            raise StoreError(f"database {self.url} is unreachable ({type(exc).__name__})") from None
