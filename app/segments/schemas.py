"""Response bodies of the segmentation API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field

from app.deps import query_model
from app.schemas import ID_MAX_LENGTH, ID_PATTERN


class SegmentRef(BaseModel):
    """Which segment, in words a marketer reads."""

    id: int
    label: str
    algorithm: str


class RfmOut(BaseModel):
    """Recency/frequency/monetary values, their 1–5 scores and the named RFM group."""

    recency_days: float | None
    frequency: float
    monetary: float
    r: int
    f: int
    m: int
    group: str


class SegmentOut(BaseModel):
    """A customer's segment, computed from their live behaviour.

    With the store down and nothing cached, the segment assigned at the last retrain is
    returned instead, with `degraded: true` and no RFM figures.
    """

    user_id: str
    segment: SegmentRef
    rfm: RfmOut | None
    outlier: bool
    model_version: int
    computed_at: datetime
    degraded: bool = False


class SegmentsOut(BaseModel):
    """Every segment's profile and the clustering quality figures."""

    model_version: int
    algorithm: str
    quality: dict[str, Any]
    segments: list[dict[str, Any]]
    other_algorithm: dict[str, Any]


class MembersQuery(BaseModel):
    """Pagination of a segment's members."""

    model_config = ConfigDict(frozen=True)

    cursor: str | None = Field(
        None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="The last user id of the previous page",
    )
    limit: int = Field(100, ge=1, le=1000)


MembersParams = Annotated[MembersQuery, Depends(query_model(MembersQuery))]


class MembersOut(BaseModel):
    """One page of a segment's members (as assigned at the last retrain)."""

    segment_id: int
    model_version: int
    users: list[str]
    next_cursor: str | None
