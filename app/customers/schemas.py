"""Request and response bodies of the users API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.events.schemas import EventOut
from app.schemas import Attributes


class UserIn(BaseModel):
    """A customer's profile attributes (segment hints, country, channel…)."""

    model_config = ConfigDict(extra="forbid")

    attributes: Attributes = Field(default_factory=dict)


class UserOut(BaseModel):
    """A stored customer."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class UserExport(BaseModel):
    """Everything stored about a customer (GDPR access request)."""

    user: UserOut
    events: list[EventOut]
    exported_at: datetime
