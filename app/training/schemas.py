"""Response bodies of the training and model APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.training.models import RunStatus


class RetrainAccepted(BaseModel):
    """A queued (or already running) training run."""

    run_id: int
    status: RunStatus
    status_url: str
    already_running: bool = False


class RunOut(BaseModel):
    """A training run's state, timings, metrics or error."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    status: RunStatus
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    metrics: dict[str, Any] | None
    timings: dict[str, Any] | None
    model_version: int | None


class VersionOut(BaseModel):
    """A trained model version."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    created_at: datetime
    is_active: bool
    metrics: dict[str, Any]
    note: str | None
