"""dispatch lease: a generation that fences a dispatcher which lost the lease

Revision ID: 20261207_dispatch_lease
Revises: 20261207_user_merges
Create Date: 2026-12-07 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_dispatch_lease"
down_revision: str | None = "20261207_user_merges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "dispatcher_lease",
        sa.Column("generation", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("dispatcher_lease") as batch:
        batch.drop_column("generation")
