"""ingest rules: item placeholders and the change log of out-of-process imports

Revision ID: 20261201_ingest_rules
Revises: 20261127_api_keys
Create Date: 2026-12-01 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261201_ingest_rules"
down_revision: str | None = "20261127_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_placeholder", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # Items that events created before this rule carry no catalogue data at all: they become
    # placeholders, never recommended until PUT/POST /items describes them.
    op.execute(
        "UPDATE item SET is_placeholder = true "
        "WHERE title = '' AND description = '' AND price IS NULL"
    )
    op.create_table(
        "ingest_change",
        sa.Column("epoch", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "user_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("epoch", name=op.f("pk_ingest_change")),
    )
    with op.batch_alter_table("ingest_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_change_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_change_created_at"))
    op.drop_table("ingest_change")
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_column("is_placeholder")
