"""Request and response bodies of the events API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import ExternalId


class EventIn(BaseModel):
    """One interaction as a client sends it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_id: ExternalId | None = Field(None, description="Client id; a repeat is not stored again")
    user_id: ExternalId
    item_id: ExternalId
    type: str = Field(min_length=1, max_length=32, description="One of the configured event types")
    value: float | None = Field(None, ge=-1e12, le=1e12, description="Rating, quantity or amount")
    order_id: ExternalId | None = Field(None, description="Order/invoice the purchase belongs to")
    occurred_at: datetime | None = Field(None, description="When it happened (default: now)")


class EventBatchIn(BaseModel):
    """A batch of events, validated as a whole before any is written."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class IngestResult(BaseModel):
    """How many events of a batch were stored and how many were repeats."""

    accepted: int
    duplicates: int


class EventOut(BaseModel):
    """A stored event."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str | None
    user_id: str
    item_id: str
    type: str
    value: float | None
    order_id: str | None
    occurred_at: datetime
    received_at: datetime
