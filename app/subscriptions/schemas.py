"""Request and response bodies of outbound webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.subscriptions.models import DeliveryStatus, EventType

MAX_URL = 2048
#: http(s), a host, no white space: stated in the schema, so integrators see the rule. U+0085
#: is named because the validator's \s (Unicode White_Space) holds it and ECMA's does not.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\u0085/?#]+[^\s\u0085]*$"


class SubscriptionIn(BaseModel):
    """Where to deliver which customer changes, and the secret to sign them with."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://crm.example.com/hooks/tastemaker",
                    "events": ["segment.entered", "churn_risk.changed"],
                    "secret": "a-long-random-shared-secret",
                }
            ]
        },
    )

    url: str = Field(
        min_length=8,
        max_length=MAX_URL,
        pattern=URL_PATTERN,
        description="An http:// or https:// URL with a host, to POST to",
    )
    events: list[EventType] = Field(
        min_length=1,
        max_length=4,
        json_schema_extra={"uniqueItems": True},
        description="The changes to receive (no repeats)",
    )
    secret: str = Field(
        min_length=16,
        max_length=256,
        description="Shared secret of the HMAC-SHA256 signature; never returned",
    )

    @field_validator("events")
    @classmethod
    def _no_repeats(cls, events: list[EventType]) -> list[EventType]:
        if len(set(events)) != len(events):
            raise ValueError("events must not repeat an event type")
        return events


class SubscriptionOut(BaseModel):
    """A subscription (its secret is never shown) and how many deliveries are in each status."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    created_at: datetime
    deliveries: dict[str, int] = Field(
        default_factory=dict, description="Deliveries by status: pending, delivered, dead"
    )


class DeliveriesQuery(BaseModel):
    """Which deliveries of a subscription to list."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: DeliveryStatus | None = Field(None, description="Only deliveries in this status")
    after: int | None = Field(
        None, ge=0, le=2**62, description="Cursor: the last delivery id of the previous page"
    )
    limit: int = Field(100, ge=1, le=1000, description="Deliveries per page")


class DeliveryOut(BaseModel):
    """One delivery: its event, where it stands, and the last error."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: str
    user_id: str
    type: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    payload: dict[str, Any]


class DeliveriesOut(BaseModel):
    """A page of deliveries; pass `next_after` as `after` for the next one."""

    deliveries: list[DeliveryOut]
    next_after: int | None


class RedriveOut(BaseModel):
    """How many dead deliveries were made pending again."""

    redriven: int
