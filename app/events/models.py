"""The event store: `event`, the append-only log of interactions, `user`, the customers those
events belong to (ingestion creates them), and `ingest_change`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow


class User(Base):
    """A customer, identified by the shop's own id."""

    __tablename__ = "user"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Event(Base):
    """One interaction of a user with an item."""

    __tablename__ = "event"
    __table_args__ = (
        # "a user's recent events" without a sort, and every item they had from the index
        # alone (no row look-ups: a long history's seen set); training streams by primary key.
        Index("ix_event_user_id_occurred_at_item_id", "user_id", "occurred_at", "item_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IngestChange(Base):
    """Users an out-of-process writer (an import) changed: each worker drops what it cached.

    Written only when the cache is in-process (no Redis), which an importer cannot reach;
    `epoch` increases in commit order, so a worker applies every change after its last epoch.
    """

    __tablename__ = "ingest_change"

    epoch: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    user_ids: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
