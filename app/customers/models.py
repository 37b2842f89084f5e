"""The `erasure` table: the record of each erasure (the `user` table is in app/events/models.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Erasure(Base):
    """A user erased (GDPR): every worker polls these to drop the id from its bundle look-ups.

    Kept while bundles trained before the erasure may be served (any version can be activated
    again), so no worker ever answers from an erased user's training-time data.
    """

    __tablename__ = "erasure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class UserMerge(Base):
    """A visitor merged into a customer (POST /users/{id}/merge), kept so that erasing the
    customer erases the visitor too: events that came under the visitor's token later, and the
    visitor's look-ups in bundles trained before the merge."""

    __tablename__ = "user_merge"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    visitor_id: Mapped[str] = mapped_column(String(128), index=True)
    events: Mapped[int] = mapped_column(Integer)
    merged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
