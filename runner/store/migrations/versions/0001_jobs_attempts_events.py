"""Jobs, attempts, events and meta: the journal's records, shared by every process.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sonic_meta",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
    )
    op.create_table(
        "sonic_jobs",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("batch", sa.String(200), nullable=False, server_default=""),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("host", sa.Text),
        sa.Column("prompt_id", sa.String(64)),
        sa.Column("resolution", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("error_kind", sa.String(40)),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("notes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("submitted_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("queued_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("run_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("download_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("sonic_jobs_state", "sonic_jobs", ["state", "priority", "row"])
    op.create_index("sonic_jobs_batch", "sonic_jobs", ["batch", "row"])
    op.create_index("sonic_jobs_host", "sonic_jobs", ["host", "state"])
    op.create_table(
        "sonic_attempts",
        sa.Column(
            "job_id",
            sa.String(200),
            sa.ForeignKey("sonic_jobs.job_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("prompt_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64)),
        sa.Column("resolution", sa.Integer),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_kind", sa.String(40)),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("sonic_attempts_prompt", "sonic_attempts", ["prompt_id"])
    op.create_index("sonic_attempts_host_state", "sonic_attempts", ["host", "state"])
    op.create_index("sonic_attempts_state", "sonic_attempts", ["state"])
    op.create_table(
        "sonic_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "job_id",
            sa.String(200),
            sa.ForeignKey("sonic_jobs.job_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("sonic_events_job", "sonic_events", ["job_id", "id"])


def downgrade() -> None:
    for table in ("sonic_events", "sonic_attempts", "sonic_jobs", "sonic_meta"):
        op.drop_table(table)
