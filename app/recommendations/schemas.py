"""Query parameters and response bodies of the recommendation API."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field

from app.deps import query_model
from app.ml.hybrid import ReasonKind, Source
from app.ml.placements import Placement
from app.schemas import ID_MAX_LENGTH, ID_PATTERN

MAX_N = 100
#: A recommendation's source: the model's, or the store's popularity before any model.
AnswerSource = Literal["personalized", "cold_start", "fallback"]
MAX_OFFSET = 200


class RecommendQuery(BaseModel):
    """Options of GET /recommend/{user_id}."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(10, ge=1, le=MAX_N, description="How many items")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Skip this many (pagination)")
    category: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20, description="Only items in these categories"
    )
    exclude: list[
        Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
    ] = Field(default_factory=list, max_length=100, description="Item ids never to return")
    exclude_seen: bool = Field(
        True, description="Leave out every item the user ever had (their whole history)"
    )
    placement: Placement = Field(
        "explore",
        description=(
            "What the answer is for: `explore` new items, `buy_again` items the user had "
            "before, `home` slots split between the two"
        ),
    )
    explain: bool = Field(True, description="Say why each item is recommended")


RecommendParams = Annotated[RecommendQuery, Depends(query_model(RecommendQuery))]


class ReasonOut(BaseModel):
    """Why an item is recommended."""

    type: ReasonKind = Field(
        description=(
            "similar_to, content_match, popular_in_segment, trending, popular or bought_before"
        )
    )
    item_id: str | None = Field(None, description="The history item behind `similar_to`")


class RecommendedItem(BaseModel):
    """One recommended item."""

    item_id: str
    score: float
    reason: ReasonOut | None = None


class RecommendationOut(BaseModel):
    """A recommendation answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "c42",
                    "recommendation_id": "5f0c7d2e9a4b4c1d8e6f3a2b1c0d9e8f",
                    "model_version": 3,
                    "source": "personalized",
                    "degraded": False,
                    "items": [
                        {
                            "item_id": "sku-9",
                            "score": 0.8125,
                            "reason": {"type": "similar_to", "item_id": "sku-7"},
                        }
                    ],
                }
            ]
        }
    )

    user_id: str
    recommendation_id: str = Field(description="Quote it when reporting clicks (attribution)")
    model_version: int | None
    source: AnswerSource = Field(description="personalized, cold_start or fallback")
    degraded: bool = Field(description="True when a dependency was down while answering")
    items: list[RecommendedItem]


class SimilarQuery(BaseModel):
    """Options of GET /items/{item_id}/similar."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(10, ge=1, le=MAX_N)


SimilarParams = Annotated[SimilarQuery, Depends(query_model(SimilarQuery))]


class SimilarOut(BaseModel):
    """Items similar to one item."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": "sku-7",
                    "model_version": 3,
                    "source": "personalized",
                    "items": [
                        {
                            "item_id": "sku-9",
                            "score": 0.8125,
                            "reason": {"type": "similar_to", "item_id": "sku-7"},
                        }
                    ],
                }
            ]
        }
    )

    item_id: str
    model_version: int | None
    source: Source
    items: list[RecommendedItem]
