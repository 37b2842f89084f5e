"""events: the user index holds the item, so a customer's seen set is read from it alone

Revision ID: 20261207_user_items_index
Revises: 20261207_dispatch_lease
Create Date: 2026-12-07 08:30:00

A customer's recent events and every item they ever had are both read by user; with the item in
the index, the second read (a 2,000-event customer's seen set) needs no look-up of the event
rows. On a large PostgreSQL store, building the index blocks writes to ``event`` while it runs;
build it beforehand without blocking, and this step only drops the old index:

    CREATE INDEX CONCURRENTLY ix_event_user_id_occurred_at_item_id
        ON event (user_id, occurred_at, item_id);
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261207_user_items_index"
down_revision: str | None = "20261207_dispatch_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_event_user_id_occurred_at_item_id"),
        "event",
        ["user_id", "occurred_at", "item_id"],
        unique=False,
        if_not_exists=True,
    )
    op.drop_index(op.f("ix_event_user_id_occurred_at"), table_name="event")


def downgrade() -> None:
    op.create_index(
        op.f("ix_event_user_id_occurred_at"), "event", ["user_id", "occurred_at"], unique=False
    )
    op.drop_index(op.f("ix_event_user_id_occurred_at_item_id"), table_name="event")
