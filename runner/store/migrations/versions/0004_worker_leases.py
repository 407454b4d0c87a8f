"""Worker leases and publish marks for the broker's fleet mode.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sonic_jobs") as batch:
        batch.add_column(sa.Column("worker", sa.String(200)))
        batch.add_column(sa.Column("lease_until", sa.Float))
        batch.add_column(sa.Column("published_at", sa.Float))
    op.create_index("sonic_jobs_lease", "sonic_jobs", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_index("sonic_jobs_lease", "sonic_jobs")
    with op.batch_alter_table("sonic_jobs") as batch:
        batch.drop_column("published_at")
        batch.drop_column("lease_until")
        batch.drop_column("worker")
