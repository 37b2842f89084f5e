"""Request and response bodies of POST /tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from app.schemas import ExternalId


def _json_integer(value: object) -> object:
    """A JSON Schema integer: a number without a fraction (``2.0`` is one), never text or a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class TokenIn(BaseModel):
    """Whom a token is for: a customer's id, or an anonymous visitor (id given or made up)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_id": "c42", "ttl_seconds": 900},
                {"visitor": True, "ttl_seconds": 1800},
            ],
            # What the validator below says, for clients and the contract test.
            "anyOf": [
                {"required": ["user_id"]},
                {"required": ["visitor"], "properties": {"visitor": {"const": True}}},
            ],
        },
    )

    # Not nullable: leave it out for a visitor whose id the service makes up.
    user_id: ExternalId = Field(
        None,  # type: ignore[assignment]
        description="The customer's (or, with `visitor`, the visitor's) id",
    )
    visitor: Annotated[bool, Strict()] = Field(
        False, description="An anonymous visitor: without `user_id`, the service makes an id up"
    )
    scopes: list[Literal["customer"]] = Field(
        default_factory=lambda: list[Literal["customer"]](["customer"]),
        min_length=1,
        max_length=1,
        description="What the token may do; `customer` is the one scope a token has",
    )
    ttl_seconds: Annotated[int, BeforeValidator(_json_integer)] = Field(
        900,
        ge=1,
        le=86400,
        description="Lifetime; at most TASTEMAKER_TOKEN_MAX_TTL_SECONDS (else 422)",
    )

    @model_validator(mode="after")
    def _someone(self) -> TokenIn:
        if self.user_id is None and not self.visitor:
            raise ValueError("give a user_id, or visitor: true for an anonymous visitor")
        return self


class TokenOut(BaseModel):
    """A minted token: present it as `Authorization: Bearer <token>`."""

    token: str
    token_type: Literal["Bearer"] = "Bearer"
    user_id: str = Field(description="The id the token is bound to")
    visitor: bool
    kid: str
    expires_at: datetime
    expires_in: int = Field(description="Seconds from now")
