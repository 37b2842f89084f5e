"""The `item` table: the shop's catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, String, Text, sql
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow


class Item(Base):
    """A product; unavailable items and placeholders are never recommended."""

    __tablename__ = "item"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(String(512), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[list[str]] = mapped_column(JSONType, default=list)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    is_available: Mapped[bool] = mapped_column(Boolean, default=True)
    # Created by an event for an item the catalogue never described: kept for the users'
    # histories, never recommended until PUT/POST /items describes it (see `recommendable`).
    is_placeholder: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql.false())
    # Set by DELETE /items/{id}: the API answers 404 for it until PUT/POST /items sends it again
    # (an item the catalogue marks is_available=false is out of stock, still readable).
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
