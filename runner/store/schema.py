"""Table definitions of the job store, for SQLite and PostgreSQL alike.

Columns mirror ``runner/journal.py`` (one row per job, one per attempt) so the two stores
describe a batch the same way; ``events`` is new: the progress and state changes that an
HTTP client or a following ``batch`` reads as they happen.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: Bumped with each Alembic revision; ``JobStore`` refuses a database that is newer.
SCHEMA_REVISION = "0006"

metadata = MetaData()

meta = Table(
    "sonic_meta",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", JSON, nullable=False),
)

jobs = Table(
    "sonic_jobs",
    metadata,
    Column("job_id", String(200), primary_key=True),
    Column("batch", String(200), nullable=False, server_default=""),
    Column("owner", String(64)),  # the API key that submitted it (None: a CLI batch)
    Column("row", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("host", Text),
    Column("prompt_id", String(64)),
    Column("resolution", Integer),
    Column("error", Text),
    Column("error_kind", String(40)),
    Column("outputs", JSON, nullable=False),
    Column("notes", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("submitted_at", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("queued_seconds", Float, nullable=False, server_default="0"),
    Column("run_seconds", Float, nullable=False, server_default="0"),
    Column("download_seconds", Float, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False, server_default="0"),
    # Fleet mode: the worker that holds the job while it is in flight, until when (it renews
    # the lease while it works; an expired lease lets another worker take the job over),
    # and when its message was confirmed by the broker (a resumed publisher re-sends the rest).
    Column("worker", String(200)),
    Column("lease_until", Float),
    Column("published_at", Float),
    Index("sonic_jobs_state", "state", "priority", "row"),
    Index("sonic_jobs_batch", "batch", "row"),
    Index("sonic_jobs_host", "host", "state"),
    Index("sonic_jobs_owner", "owner", "created_at"),
    Index("sonic_jobs_owner_state", "owner", "state"),  # a key's unfinished jobs (its max_queued)
    Index("sonic_jobs_lease", "state", "lease_until"),
)

attempts = Table(
    "sonic_attempts",
    metadata,
    Column("job_id", String(200), ForeignKey("sonic_jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("host", Text, nullable=False),
    Column("prompt_id", String(64), nullable=False),
    Column("client_id", String(64)),
    Column("resolution", Integer),
    Column("state", String(20), nullable=False),
    Column("error", Text),
    Column("error_kind", String(40)),
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Index("sonic_attempts_prompt", "prompt_id"),
    Index("sonic_attempts_host_state", "host", "state"),
    Index("sonic_attempts_state", "state"),
)

events = Table(
    "sonic_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("job_id", String(200), ForeignKey("sonic_jobs.job_id", ondelete="CASCADE"), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("data", JSON, nullable=False),
    Index("sonic_events_job", "job_id", "id"),
)

#: The webhook outbox: one row per delivery, written in the same database as the job, so
#: a delivery survives any restart and is sent by whichever process's sender is running.
webhooks = Table(
    "sonic_webhooks",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("msg_id", String(250), nullable=False),
    Column("job_id", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("event_type", String(60), nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("last_error", Text),
    UniqueConstraint("msg_id", name="sonic_webhooks_msg"),
    Index("sonic_webhooks_due", "state", "next_at"),
)

#: API keys: only a SHA-256 of the secret is kept, so a leaked database leaks no key.
api_keys = Table(
    "sonic_api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("max_queued", Integer, nullable=False),
    Column("per_minute", Integer, nullable=False),
    Column("objects_prefix", String(512)),  # JSON submissions may name only objects under it
    UniqueConstraint("secret_hash", name="sonic_api_keys_hash"),
)

#: Idempotency-Key -> the job the first request made (per API key).
idempotency = Table(
    "sonic_idempotency",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("job_id", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)

#: Workflows registered with ``sonic-runner templates add``: in the database, not on one
#: replica's disk, so every ``serve`` replica lists and accepts the same templates.
templates = Table(
    "sonic_templates",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("workflow", JSON, nullable=False),
    Column("tier", String(20)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
