"""Annotated dependencies: what a handler's signature says it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from app.cache import Cache
from app.config import Settings
from app.db import pop_after_commit
from app.training.registry import ModelRegistry


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_cache(request: Request) -> Cache:
    """The app's cache."""
    return request.app.state.cache


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One unit of work per request: commit on success, roll back on error, then run hooks."""
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
        await run_in_threadpool(session.commit)
    except BaseException:
        await run_in_threadpool(session.rollback)
        raise
    finally:
        await run_in_threadpool(session.close)
    for callback in pop_after_commit(session):
        await callback()


def get_registry(request: Request) -> ModelRegistry:
    """This worker's model registry."""
    return request.app.state.registry


def get_session_factory(request: Request) -> sessionmaker[Session]:
    """The session factory, for cache-first paths that touch the store only on a miss."""
    return request.app.state.sessionmaker


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CacheDep = Annotated[Cache, Depends(get_cache)]
# scope="function": commit before the response is sent, so a failed commit is the answer.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
