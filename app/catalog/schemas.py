"""Request and response bodies of the catalogue API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from app.schemas import Attributes, ExternalId, Text

Category = Annotated[Text, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]

# The example item of the OpenAPI document.
_ITEM: dict[str, Any] = {
    "title": "Red mug",
    "description": "A 350 ml stoneware mug",
    "categories": ["kitchen", "mugs"],
    "price": 12.5,
    "attributes": {"brand": "Acme"},
    "is_available": True,
}


class ItemIn(BaseModel):
    """An item's catalogue data as the shop sends it."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [_ITEM]},
    )

    title: Text = Field("", max_length=512)
    description: Text = Field("", max_length=10_000)
    categories: list[Category] = Field(default_factory=list, max_length=20)
    price: Annotated[float, Strict()] | None = Field(None, ge=0, le=1e9)
    attributes: Attributes = Field(default_factory=dict)
    is_available: Annotated[bool, Strict()] = True


class ItemWithId(ItemIn):
    """An item in a batch upsert."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "sku-7", **_ITEM}]})

    id: ExternalId


class ItemBatchIn(BaseModel):
    """A batch of items to create or replace."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"items": [{"id": "sku-7", **_ITEM}, {"id": "sku-9", "title": "Blue mug"}]}
            ]
        },
    )

    items: list[ItemWithId] = Field(min_length=1)


class ItemOut(BaseModel):
    """A stored item."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "sku-7",
                    **_ITEM,
                    "is_placeholder": False,
                    "created_at": "2026-11-01T09:00:00Z",
                    "updated_at": "2026-11-30T18:00:00Z",
                }
            ]
        },
    )

    id: str
    title: str
    description: str
    categories: list[str]
    price: float | None
    attributes: dict[str, Any]
    is_available: bool
    is_placeholder: bool = Field(
        description="Created by an event, not yet described by the catalogue: never recommended"
    )
    created_at: datetime
    updated_at: datetime


class ItemBatchResult(BaseModel):
    """How many items a batch upsert wrote."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"upserted": 2}]})

    upserted: int
