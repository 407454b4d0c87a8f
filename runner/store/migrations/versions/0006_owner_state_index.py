"""An index on (owner, state): an API key's unfinished jobs are counted on every submission.

Without it that count read every job the key ever submitted (sonic_jobs_owner is on
owner, created_at), so a submission got slower with the key's history.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("sonic_jobs_owner_state", "sonic_jobs", ["owner", "state"])


def downgrade() -> None:
    op.drop_index("sonic_jobs_owner_state", table_name="sonic_jobs")
