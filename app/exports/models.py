"""The `export_job` table: campaign exports, from queued to a downloadable file."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow

#: An export's life: queued, running, then succeeded or failed (a silent one is failed).
ExportStatus = Literal["queued", "running", "succeeded", "failed"]
#: What an export holds: each customer's recommendations, or a segment's members.
ExportKind = Literal["recommendations", "segment_members"]
#: The file's format: comma-separated values, or one JSON object per line.
ExportFormat = Literal["csv", "jsonl"]


class ExportJob(Base):
    """One export request: what it holds, how far it got and where its file is."""

    __tablename__ = "export_job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[ExportKind] = mapped_column(String(32))
    format: Mapped[ExportFormat] = mapped_column(String(8))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[ExportStatus] = mapped_column(String(16), default="queued")
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
