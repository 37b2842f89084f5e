"""The serving context: what the read endpoints (`/recommend`, `/segment`, `/items/…/similar`)
take, resolved as one dependency since they run on every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from app.cache import Cache
from app.config import Settings
from app.training.registry import ModelRegistry


@dataclass(frozen=True)
class Serving:
    """This worker's settings, cache, model registry and session factory."""

    settings: Settings
    cache: Cache
    registry: ModelRegistry
    factory: sessionmaker[Session]


async def get_serving(request: Request) -> Serving:
    """The app's serving context (made once, when the app starts)."""
    return request.app.state.serving


ServingDep = Annotated[Serving, Depends(get_serving)]
