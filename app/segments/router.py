"""HTTP routes of customer segments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from app.deps import AdminKey, ReadKey, query_openapi
from app.schemas import UserIdPath
from app.segments import customer_map, service
from app.segments.schemas import (
    MapOut,
    MapParams,
    MapQuery,
    MembersOut,
    MembersParams,
    MembersQuery,
    SegmentOut,
    SegmentsOut,
)
from app.training.serving import ServingDep

router = APIRouter(tags=["segments"])


@router.get(
    "/segment/{user_id}",
    dependencies=[ReadKey],
    response_class=Response,
    responses={200: {"model": SegmentOut, "content": {"application/json": {}}}},
)
async def get_segment(user_id: UserIdPath, serving: ServingDep) -> Response:
    """Which segment this customer is in now, with RFM scores and group."""
    body = await service.segment(user_id, serving)
    return Response(body, media_type="application/json")


# Unset fields stay out: profiles fitted without purchase counts have no top_items at all.
@router.get(
    "/segments",
    dependencies=[ReadKey],
    response_model=SegmentsOut,
    response_model_exclude_unset=True,
)
async def list_segments(serving: ServingDep) -> SegmentsOut:
    """Every segment's profile (size, R/F/M, top categories and items) and quality figures."""
    return service.profiles(serving)


@router.get(
    "/segments/map",
    dependencies=[AdminKey],
    response_model=MapOut,
    openapi_extra=query_openapi(MapQuery),
)
async def segment_map(q: MapParams, serving: ServingDep) -> MapOut:
    """Up to 5,000 sampled customers on a 2-D projection of the segmentation features, with
    their segment and RFM, and the R × FM grid of their counts."""
    return await customer_map.customer_map(serving, q)


@router.get(
    "/segments/{segment_id}/users",
    dependencies=[AdminKey],
    response_model=MembersOut,
    responses={200: {"content": {"text/csv": {}}}},
    openapi_extra=query_openapi(MembersQuery),
)
async def segment_members(
    segment_id: Annotated[int, Path(ge=-2, le=10_000)],
    q: MembersParams,
    serving: ServingDep,
    accept: Annotated[str | None, Header()] = None,
) -> MembersOut | Response:
    """A page of a segment's members, optionally only those in one RFM group or churn risk;
    CSV with `Accept: text/csv`."""
    page = await service.members(serving, segment_id, q)
    if accept and "text/csv" in accept:
        headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else {}
        return Response(service.members_csv(page), media_type="text/csv", headers=headers)
    return page
