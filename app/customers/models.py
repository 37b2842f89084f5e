"""The `user` table, customers known to the shop, and `erasure`, the record of each erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow


class User(Base):
    """A customer, identified by the shop's own id."""

    __tablename__ = "user"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Erasure(Base):
    """A user erased (GDPR): every worker polls these to drop the id from its bundle look-ups.

    Kept while bundles trained before the erasure may be served (any version can be activated
    again), so no worker ever answers from an erased user's training-time data.
    """

    __tablename__ = "erasure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
