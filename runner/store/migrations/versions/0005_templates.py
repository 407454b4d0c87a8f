"""Templates registered with ``sonic-runner templates add``, shared by every API replica.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sonic_templates",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("workflow", sa.JSON, nullable=False),
        sa.Column("tier", sa.String(20)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sonic_templates")
