"""Training and model-version use cases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import after_commit, utcnow
from app.errors import Conflict, NotFound
from app.ml.bundle import BundleError
from app.training import repository
from app.training.bundle_store import bundle_store
from app.training.models import ModelVersion, TrainingRun
from app.training.registry import load_bundle, store_origin, write_active_pointer
from app.training.runner import spawn
from app.training.schemas import RetrainAccepted


def reap_stale_run(session: Session, settings: Settings) -> None:
    """Mark the active run failed when its trainer has gone silent (killed, crashed host)."""
    run = repository.active_run(session)
    if run is None:
        return
    last_sign = run.heartbeat_at or run.started_at or run.requested_at
    if utcnow() - last_sign > timedelta(seconds=settings.trainer_heartbeat_timeout_seconds):
        repository.finish_run(
            session,
            run,
            "failed",
            error=f"the trainer stopped responding (no heartbeat since {last_sign.isoformat()})",
        )


def request_retrain(session: Session, settings: Settings) -> RetrainAccepted:
    """Queue a run and start a trainer process, or answer with the run already in progress."""
    reap_stale_run(session, settings)
    run = repository.create_run(session)
    if run is None:
        active = repository.active_run(session)
        if active is None:  # finished between the two statements; the caller may retry
            raise Conflict("a training run just finished; retry the request")
        return RetrainAccepted(
            run_id=active.id,
            status=active.status,
            status_url=f"/retrain/{active.id}",
            already_running=True,
        )
    run_id = run.id

    async def _start() -> None:
        spawn(settings, run_id)

    after_commit(session, _start)
    return RetrainAccepted(run_id=run_id, status=run.status, status_url=f"/retrain/{run_id}")


def get_run(session: Session, settings: Settings, run_id: int) -> TrainingRun:
    """A run's current state (a silent trainer is reported as failed)."""
    reap_stale_run(session, settings)
    run = repository.get_run(session, run_id)
    if run is None:
        raise NotFound(f"training run {run_id} does not exist")
    return run


def list_versions(session: Session) -> list[ModelVersion]:
    """Every model version, newest first."""
    return list(repository.versions(session))


def activate_version(session: Session, settings: Settings, version: int) -> ModelVersion:
    """Make `version` active (roll back or forward) once its bundle is verified loadable here."""
    row = repository.get_version(session, version)
    if row is None:
        raise NotFound(f"model version {version} does not exist")
    try:
        load_bundle(
            row.version,
            row.path,
            origin=store_origin(session, row.version),
            store=bundle_store(settings),
        )
    except BundleError as exc:
        raise Conflict(f"model version {version} cannot be loaded: {exc}") from exc
    repository.activate(session, row)
    row.note = None
    model_dir, number = settings.model_dir, row.version

    async def _record() -> None:
        write_active_pointer(model_dir, number)

    after_commit(session, _record)
    return row
