"""API keys, job owners and idempotency keys for the HTTP API.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sonic_jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(64)))
    op.create_index("sonic_jobs_owner", "sonic_jobs", ["owner", "created_at"])
    op.create_table(
        "sonic_api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("max_queued", sa.Integer, nullable=False),
        sa.Column("per_minute", sa.Integer, nullable=False),
        sa.UniqueConstraint("secret_hash", name="sonic_api_keys_hash"),
    )
    op.create_table(
        "sonic_idempotency",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sonic_idempotency")
    op.drop_table("sonic_api_keys")
    op.drop_index("sonic_jobs_owner", "sonic_jobs")
    with op.batch_alter_table("sonic_jobs") as batch:
        batch.drop_column("owner")
