"""HTTP routes of recommendations."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import CatalogRead, OwnRead, query_openapi
from app.recommendations import service
from app.recommendations.schemas import (
    RecommendationOut,
    RecommendParams,
    RecommendQuery,
    SimilarOut,
    SimilarParams,
    SimilarQuery,
)
from app.schemas import ItemIdPath, UserIdPath
from app.training.serving import ServingDep

router = APIRouter(tags=["recommendations"])


@router.get(
    "/recommend/{user_id}",
    dependencies=[OwnRead],
    response_class=Response,
    responses={200: {"model": RecommendationOut, "content": {"application/json": {}}}},
    openapi_extra=query_openapi(RecommendQuery),
)
async def recommend(user_id: UserIdPath, q: RecommendParams, serving: ServingDep) -> Response:
    """What to show this customer next, with a reason per item."""
    body = await service.recommend(user_id, q, serving)
    return Response(body, media_type="application/json")


@router.get(
    "/items/{item_id}/similar",
    dependencies=[CatalogRead],
    openapi_extra=query_openapi(SimilarQuery),
)
async def similar_items(item_id: ItemIdPath, q: SimilarParams, serving: ServingDep) -> SimilarOut:
    """Items similar to this one ("customers also bought"; content for new items)."""
    return SimilarOut.model_validate(service.similar(item_id, q, serving))
