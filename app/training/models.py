"""The `training_run`, `model_version` and `store_identity` tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow

#: A run's life: queued, then running, then succeeded or failed (a silent trainer is failed).
RunStatus = Literal["queued", "running", "succeeded", "failed"]


class TrainingRun(Base):
    """One request to retrain, from queued to succeeded or failed."""

    __tablename__ = "training_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[RunStatus] = mapped_column(String(16), default="queued")
    # 1 while queued or running, NULL otherwise: the unique constraint lets the database,
    # not process memory, guarantee a single run at a time across every replica.
    active_slot: Mapped[int | None] = mapped_column(Integer, unique=True, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ModelVersion(Base):
    """A trained bundle on disk; exactly one is active."""

    __tablename__ = "model_version"
    __table_args__ = (
        Index(
            "uq_model_version_single_active",
            "is_active",
            unique=True,
            postgresql_where=text("is_active"),
            sqlite_where=text("is_active"),
        ),
    )

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    path: Mapped[str] = mapped_column(String(1024))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class StoreIdentity(Base):
    """The store's random identity (one row): every bundle records the id of its store."""

    __tablename__ = "store_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    store_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
