"""The model registry of one worker: which bundle version is active, loaded and swapped."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings


class ModelRegistry:
    """Holds the active bundle; later versions poll the store and hot-swap."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.factory = factory
        self.current: Any = None

    async def start(self) -> None:
        """Load the active version, if any."""

    async def stop(self) -> None:
        """Stop polling."""

    def describe(self) -> dict[str, Any]:
        """What /ready says about the model."""
        return {"state": "none_yet", "version": None}
