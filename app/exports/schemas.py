"""Request and response bodies of campaign exports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.exports.models import ExportFormat, ExportKind, ExportStatus
from app.ml.placements import Placement
from app.recommendations.schemas import MAX_N
from app.segments.schemas import ChurnRisk, RfmGroupName


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


#: A segment id as the segment endpoints take it (the bounds before the validator, so that
#: the JSON schema states them).
SegmentId = Annotated[int, Field(ge=-1, le=100_000), BeforeValidator(_not_a_boolean)]


class _ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat = Field("csv", description="`csv`, or `jsonl` (one JSON object a line)")
    rfm_group: RfmGroupName | None = Field(
        None, description="Only customers whose GET /segment answer has this RFM group now"
    )
    churn_risk: ChurnRisk | None = Field(
        None, description="Only customers whose GET /segment answer has this churn risk now"
    )


class RecommendationsExportIn(_ExportIn):
    """Every customer's answer of GET /recommend (or only one segment's members')."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"kind": "recommendations", "format": "csv", "n": 10, "placement": "home"}]
        }
    )

    kind: Literal["recommendations"]
    segment: SegmentId | None = Field(
        None, description="Only the members of this segment (as assigned at the last retrain)"
    )
    n: Annotated[int, Field(ge=1, le=MAX_N), BeforeValidator(_not_a_boolean)] = Field(
        10, description="Items per customer"
    )
    placement: Placement = Field("explore", description="As GET /recommend's `placement`")


class MembersExportIn(_ExportIn):
    """Each member's answer of GET /segment, with their stored attributes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"kind": "segment_members", "format": "jsonl", "segment": 2}]
        }
    )

    kind: Literal["segment_members"]
    segment: SegmentId = Field(description="The segment (as assigned at the last retrain)")


#: What to export, told apart by `kind`.
ExportIn = Annotated[RecommendationsExportIn | MembersExportIn, Field(discriminator="kind")]


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
