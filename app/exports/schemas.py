"""Request and response bodies of campaign exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.exports.models import ExportFormat, ExportKind, ExportStatus
from app.ml.placements import Placement
from app.recommendations.schemas import MAX_N


class ExportIn(BaseModel):
    """What to export: every customer's recommendations (or one segment's), or a segment's
    members with their RFM figures and attributes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "recommendations", "format": "csv", "n": 10, "placement": "home"},
                {"kind": "segment_members", "format": "jsonl", "segment": 2},
            ]
        },
    )

    kind: ExportKind = Field(
        "recommendations",
        description="`recommendations`: each customer's answer of GET /recommend; "
        "`segment_members`: each member's answer of GET /segment with their attributes",
    )
    format: ExportFormat = Field("csv", description="`csv`, or `jsonl` (one JSON object a line)")
    segment: int | None = Field(
        None,
        ge=-1,
        le=100_000,
        description="Only the members of this segment (as assigned at the last retrain); "
        "required for `segment_members`",
    )
    n: int = Field(10, ge=1, le=MAX_N, description="Items per customer (`recommendations`)")
    placement: Placement = Field("explore", description="As GET /recommend's `placement`")

    @model_validator(mode="after")
    def _segment_for_members(self) -> Self:
        if self.kind == "segment_members" and self.segment is None:
            raise ValueError("a segment_members export needs `segment`")
        return self


class ExportOut(BaseModel):
    """An export's state; `download_url` once its file is ready."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: ExportKind
    format: ExportFormat
    params: dict[str, Any]
    status: ExportStatus
    total: int | None = Field(description="Customers to export (known once it started)")
    done: int = Field(description="Customers exported so far")
    model_version: int | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    download_url: str | None = None

    @model_validator(mode="after")
    def _link(self) -> Self:
        if self.status == "succeeded":
            self.download_url = f"/exports/{self.id}/download"
        return self
