"""HTTP routes of retraining and model versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from app.deps import AdminKey, SessionDep, SettingsDep
from app.training import service
from app.training.schemas import RetrainAccepted, RunOut, VersionOut

router = APIRouter(tags=["training"], dependencies=[AdminKey])


@router.post("/retrain", status_code=status.HTTP_202_ACCEPTED)
def retrain(session: SessionDep, settings: SettingsDep) -> RetrainAccepted:
    """Start a background training run (one at a time across every replica)."""
    return service.request_retrain(session, settings)


@router.get("/retrain/{run_id}")
def get_run(
    run_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, settings: SettingsDep
) -> RunOut:
    """A training run's status, timings, metrics or error."""
    return RunOut.model_validate(service.get_run(session, settings, run_id))


@router.get("/models")
def list_models(session: SessionDep) -> list[VersionOut]:
    """Every trained model version with its metrics, newest first."""
    return [VersionOut.model_validate(v) for v in service.list_versions(session)]


@router.post("/models/{version}/activate")
def activate_model(
    version: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, settings: SettingsDep
) -> VersionOut:
    """Make a version active: roll back or forward; every worker swaps within seconds."""
    return VersionOut.model_validate(service.activate_version(session, settings, version))
