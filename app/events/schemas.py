"""Request and response bodies of the events API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

from app.schemas import ExternalId

# The example event of the OpenAPI document.
_EVENT: dict[str, Any] = {
    "event_id": "e-1001",
    "user_id": "c42",
    "item_id": "sku-7",
    "type": "purchase",
    "value": 2.0,
    "order_id": "o-77",
    "occurred_at": "2026-11-30T18:05:00Z",
}


class EventIn(BaseModel):
    """One interaction as a client sends it."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [_EVENT]},
    )

    event_id: ExternalId | None = Field(None, description="Client id; a repeat is not stored again")
    user_id: ExternalId
    item_id: ExternalId
    type: str = Field(min_length=1, max_length=32, description="One of the configured event types")
    value: Annotated[float, Strict()] | None = Field(
        None,
        ge=-1e12,
        le=1e12,
        description="Rating, quantity or amount: a JSON number (never a string or a boolean); "
        "negative only for the signed types (default: rating)",
    )
    order_id: ExternalId | None = Field(None, description="Order/invoice the purchase belongs to")
    occurred_at: datetime | None = Field(
        None,
        description="When it happened (default: now); at most TASTEMAKER_MAX_PAST_YEARS (20) "
        "years before and TASTEMAKER_MAX_FUTURE_SECONDS (300) after the time of the request",
    )


class EventBatchIn(BaseModel):
    """A batch of events, validated as a whole before any is written."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"events": [_EVENT, {"user_id": "c42", "item_id": "sku-9", "type": "view"}]}
            ]
        },
    )

    events: list[EventIn] = Field(min_length=1)


class IngestResult(BaseModel):
    """How many events of a batch were stored, how many were repeats, and which conflicted."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"accepted": 2, "duplicates": 0, "conflicts": []}]}
    )

    accepted: int = Field(description="Events stored")
    duplicates: int = Field(description="Repeats of a stored or earlier event_id, same payload")
    conflicts: list[int] = Field(
        default_factory=list,
        description="Indexes of events whose event_id is stored (or earlier in the batch) with "
        "another payload; nothing of them was stored",
    )


class EventOut(BaseModel):
    """A stored event."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [{**_EVENT, "received_at": "2026-11-30T18:05:01Z"}]},
    )

    event_id: str | None
    user_id: str
    item_id: str
    type: str
    value: float | None
    order_id: str | None
    occurred_at: datetime
    received_at: datetime
