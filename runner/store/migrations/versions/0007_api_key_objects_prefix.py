"""An API key's own folder of the object store: JSON submissions with that key may name only
objects under it, so one client cannot have another client's uploads rendered.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sonic_api_keys", sa.Column("objects_prefix", sa.String(512)))


def downgrade() -> None:
    op.drop_column("sonic_api_keys", "objects_prefix")
