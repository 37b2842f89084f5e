"""HTTP routes of the users API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.customers import service
from app.customers.schemas import MergeIn, MergeOut, UserExport, UserIn, UserOut
from app.deps import AdminKey, CacheDep, ServingStateDep, SessionDep, SettingsDep, WriteKey
from app.events import service as events_service
from app.events.schemas import EventOut
from app.schemas import UserIdPath

router = APIRouter(tags=["users"])


@router.put("/users/{user_id}", dependencies=[WriteKey])
def put_user(
    user_id: UserIdPath, data: UserIn, session: SessionDep, cache: CacheDep, settings: SettingsDep
) -> UserOut:
    """Create a user or replace their attributes."""
    return UserOut.model_validate(service.put(session, cache, user_id, data, settings))


@router.get("/users/{user_id}", dependencies=[WriteKey])
def get_user(user_id: UserIdPath, session: SessionDep) -> UserOut:
    """Read a user's profile."""
    return UserOut.model_validate(service.get_or_404(session, user_id))


@router.get("/users/{user_id}/events", dependencies=[WriteKey])
def get_user_events(
    user_id: UserIdPath,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[EventOut]:
    """A user's most recent events, newest first."""
    service.get_or_404(session, user_id)
    return [EventOut.model_validate(e) for e in events_service.recent(session, user_id, limit)]


@router.post("/users/{user_id}/merge", dependencies=[WriteKey])
def merge_visitor(
    user_id: UserIdPath, data: MergeIn, session: SessionDep, cache: CacheDep, settings: SettingsDep
) -> MergeOut:
    """Make an anonymous visitor's events this customer's, once (call it at sign-in)."""
    return service.merge(session, cache, user_id, data.visitor_id, settings)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[AdminKey])
def delete_user(
    user_id: UserIdPath,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    state: ServingStateDep,
) -> Response:
    """Erase a user: events, attributes, cache entries, bundle look-ups in every worker (GDPR)."""
    service.delete(session, cache, user_id, settings, state)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/{user_id}/export", dependencies=[AdminKey])
def export_user(user_id: UserIdPath, session: SessionDep) -> UserExport:
    """Everything stored about a user, as JSON (GDPR access)."""
    return service.export(session, user_id)
