"""erasures

Revision ID: 20261201_erasures
Revises: 20261201_store_identity
Create Date: 2026-12-01 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_erasures"
down_revision: str | None = "20261201_store_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure")),
    )
    op.create_index(op.f("ix_erasure_erased_at"), "erasure", ["erased_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_erasure_erased_at"), table_name="erasure")
    op.drop_table("erasure")
