"""api_key.name is unique among active keys only: the name of a revoked key can be used again

Revision ID: 20261201_key_names_reusable
Revises: 20261201_item_retired
Create Date: 2026-12-01 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_key_names_reusable"
down_revision: str | None = "20261201_item_retired"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_constraint("uq_api_key_name", type_="unique")
    op.create_index(
        "uq_api_key_active_name",
        "api_key",
        ["name"],
        unique=True,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_api_key_active_name", table_name="api_key")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_api_key_name", ["name"])
