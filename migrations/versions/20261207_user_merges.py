"""user merges: visitors merged into customers, for erasure

Revision ID: 20261207_user_merges
Revises: 20261207_subscriptions
Create Date: 2026-12-07 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_user_merges"
down_revision: str | None = "20261207_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_merge",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("visitor_id", sa.String(length=128), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_merge")),
    )
    op.create_index(op.f("ix_user_merge_user_id"), "user_merge", ["user_id"], unique=False)
    op.create_index(op.f("ix_user_merge_visitor_id"), "user_merge", ["visitor_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_user_merge_visitor_id"), table_name="user_merge")
    op.drop_index(op.f("ix_user_merge_user_id"), table_name="user_merge")
    op.drop_table("user_merge")
