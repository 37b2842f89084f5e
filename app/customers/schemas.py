"""Request and response bodies of the users API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.events.schemas import EventOut
from app.schemas import Attributes, ExternalId


class UserIn(BaseModel):
    """A customer's profile attributes (segment hints, country, channel…)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"attributes": {"country": "FR", "channel": "app"}}]},
    )

    attributes: Attributes = Field(default_factory=dict)


class UserOut(BaseModel):
    """A stored customer."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "c42",
                    "attributes": {"country": "FR"},
                    "created_at": "2026-10-02T10:00:00Z",
                    "updated_at": "2026-11-30T18:05:01Z",
                }
            ]
        },
    )

    id: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class UserExport(BaseModel):
    """Everything stored about a customer (GDPR access request)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user": {
                        "id": "c42",
                        "attributes": {"country": "FR"},
                        "created_at": "2026-10-02T10:00:00Z",
                        "updated_at": "2026-11-30T18:05:01Z",
                    },
                    "events": [],
                    "exported_at": "2026-12-01T09:00:00Z",
                }
            ]
        }
    )

    user: UserOut
    events: list[EventOut]
    exported_at: datetime


class MergeIn(BaseModel):
    """The anonymous visitor whose events become this customer's (on sign-in)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"visitor_id": "v_Zk3q9"}]}
    )

    visitor_id: ExternalId


class MergeOut(BaseModel):
    """What a merge moved: 0 when the visitor had no events left (a repeat is harmless)."""

    user_id: str
    visitor_id: str
    merged: int = Field(description="Events moved from the visitor to the customer")
