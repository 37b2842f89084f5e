"""Response bodies of the training and model APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.training.models import RunStatus


class RetrainAccepted(BaseModel):
    """A queued (or already running) training run."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": 12,
                    "status": "queued",
                    "status_url": "/retrain/12",
                    "already_running": False,
                }
            ]
        }
    )

    run_id: int
    status: RunStatus
    status_url: str
    already_running: bool = False


class RunOut(BaseModel):
    """A training run's state, timings, metrics or error."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 12,
                    "status": "succeeded",
                    "requested_at": "2026-12-01T03:00:00Z",
                    "started_at": "2026-12-01T03:00:01Z",
                    "finished_at": "2026-12-01T03:01:05Z",
                    "error": None,
                    "metrics": {
                        "recommender": {
                            "models": {"served": {"ndcg": 0.1355}, "popularity": {"ndcg": 0.061}}
                        }
                    },
                    "timings": {"total_s": 64.2},
                    "model_version": 7,
                }
            ]
        },
    )

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

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "version": 7,
                    "created_at": "2026-12-01T03:01:05Z",
                    "is_active": True,
                    "metrics": {"recommender": {"models": {"served": {"ndcg": 0.1355}}}},
                    "note": None,
                }
            ]
        },
    )

    version: int
    created_at: datetime
    is_active: bool
    metrics: dict[str, Any]
    note: str | None
