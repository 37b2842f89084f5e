"""store identity

Revision ID: 20261201_store_identity
Revises: 20261201_ingest_rules
Create Date: 2026-12-01 12:20:00

One row holding the store's random id. Bundles record the id of the store they were trained
from and workers refuse a bundle of another store. The row is filled by `upgrade()` (and so by
`tastemaker migrate`), or on first use by the trainer or a worker.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_store_identity"
down_revision: str | None = "20261201_ingest_rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_identity")),
    )


def downgrade() -> None:
    op.drop_table("store_identity")
