"""Campaign exports: every customer's recommendations, or a segment's members, as a file.

An export runs in the worker that accepted it, as a background task between requests. Each
customer's line is the answer of the route itself (:func:`app.recommendations.service.
recommend`, :func:`app.segments.service.segment`), so an export holds what the frontends and
apps get, cache included. Progress is written every :data:`CHUNK` customers and doubles as a
heartbeat: an export not heard of for :data:`STALE_SECONDS` (its worker died) is failed, and a
worker that stops fails its exports. The file is written beside, then renamed into place when
complete; an erasure after an export started withdraws its file (404), so no download holds a
customer erased since.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import typing
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.db import after_commit, utcnow
from app.errors import Conflict, ModelNotReady, NotFound
from app.exports import repository
from app.exports.models import ExportJob
from app.exports.schemas import ExportIn
from app.recommendations import service as recommendations
from app.recommendations.schemas import RecommendQuery
from app.segments import service as segments
from app.segments.schemas import SegmentOut
from app.training.serving import Serving

log = logging.getLogger(__name__)
#: Customers between two progress writes (the heartbeat).
CHUNK = 100
#: An export whose progress is older than this is failed (its worker stopped or died).
STALE_SECONDS = 120
#: The exports running in this worker (stopped with it).
_running: set[asyncio.Task] = set()
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
RECOMMENDATION_COLUMNS = (
    "user_id",
    "rank",
    "item_id",
    "score",
    "reason",
    "reason_item_id",
    "source",
    "model_version",
)


class Withdrawn(NotFound):
    """An export file that may no longer be handed out (a customer was erased since)."""

    code = "withdrawn"


def request_export(session: Session, serving: Serving, body: ExportIn) -> ExportJob:
    """Queue an export and start it in this worker once the request has committed."""
    bundle = serving.registry.current
    if bundle is None:
        raise ModelNotReady("no trained model yet: POST /retrain, then ask again")
    if body.segment is not None:
        segments.members_of(serving, body.segment)  # 404 for a segment the model lacks
    if body.rfm_group is not None or body.churn_risk is not None:
        segments.active_segmentation(serving.registry)  # 503 without a segmentation
    job = ExportJob(
        kind=body.kind,
        format=body.format,
        params=body.model_dump(exclude={"kind", "format"}),
        model_version=bundle.version,
    )
    session.add(job)
    session.flush()
    job_id = job.id

    async def _start() -> None:
        task = asyncio.create_task(run_export(serving, job_id))
        _running.add(task)
        task.add_done_callback(_running.discard)

    after_commit(session, _start)
    return job


def reap(session: Session, job: ExportJob) -> ExportJob:
    """Fail a queued or running export that has not been heard of for STALE_SECONDS."""
    last = job.heartbeat_at or job.requested_at
    if job.status in ("queued", "running") and utcnow() - last > timedelta(seconds=STALE_SECONDS):
        repository.set_status(session, job, "failed", error="the worker running it stopped")
    return job


def get_export(session: Session, job_id: int) -> ExportJob:
    """An export's state (one whose worker went silent is reported failed)."""
    job = repository.get(session, job_id, for_update=True)
    if job is None:
        raise NotFound(f"export {job_id} does not exist")
    return reap(session, job)


def list_exports(session: Session, limit: int) -> list[ExportJob]:
    """The latest exports, newest first."""
    return [reap(session, job) for job in repository.newest(session, limit)]


def download(session: Session, job_id: int) -> tuple[Path, str, str]:
    """(path, media type, file name) of a finished export's file."""
    job = get_export(session, job_id)
    if job.status != "succeeded" or job.path is None:
        raise Conflict(f"export {job_id} is {job.status}; its file is not ready")
    path = Path(job.path)
    if job.started_at is not None and repository.erased_since(session, job.started_at):
        path.unlink(missing_ok=True)
        raise Withdrawn(f"export {job_id} was made before a customer's erasure; export again")
    if not path.exists():
        raise Withdrawn(f"the file of export {job_id} is no longer on this replica; export again")
    return path, MEDIA_TYPES[job.format], f"tastemaker-export-{job_id}.{job.format}"


async def stop_exports() -> None:
    """Cancel this worker's running exports (each records itself failed)."""
    tasks = list(_running)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def run_export(serving: Serving, job_id: int) -> None:
    """Write the export's file, customer by customer, and record the outcome."""
    folder = Path(serving.settings.data_dir) / "exports"
    try:
        job, users = await run_in_threadpool(_begin, serving, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{job_id}.{job.format}"
        partial = final.with_suffix(".partial")
        with partial.open("w", encoding="utf-8", newline="") as out:
            await _write(serving, job, users, out)
        partial.replace(final)
        await run_in_threadpool(_finish, serving, job_id, None, str(final))
    except asyncio.CancelledError:
        await run_in_threadpool(_finish, serving, job_id, "the service stopped during the export")
        raise
    except Exception as exc:
        log.exception("export %s failed", job_id)
        await run_in_threadpool(_finish, serving, job_id, f"{type(exc).__name__}: {exc}")


def _begin(serving: Serving, job_id: int) -> tuple[ExportJob, list[str]]:
    """Mark the job running and list its customers."""
    with serving.factory.begin() as session:
        job = repository.get(session, job_id, for_update=True)
        if job is None or job.status != "queued":
            raise RuntimeError(f"export {job_id} is not queued")
        segment = job.params.get("segment")
        if segment is not None:
            users = segments.members_of(serving, segment)
        else:
            deleted = serving.registry.deleted_users
            users = [u for u in repository.customer_ids(session) if u not in deleted]
        repository.set_status(session, job, "running")
        job.total = len(users)
        session.flush()
        session.expunge(job)
        return job, users


def _progress(serving: Serving, job_id: int, done: int) -> None:
    with serving.factory.begin() as session:
        job = repository.get(session, job_id, for_update=True)
        if job is not None and job.status == "running":
            job.done, job.heartbeat_at = done, utcnow()


def _finish(serving: Serving, job_id: int, error: str | None, path: str | None = None) -> None:
    with serving.factory.begin() as session:
        job = repository.get(session, job_id, for_update=True)
        if job is None or job.status != "running":
            return
        if error is None:
            job.path, job.done = path, job.total or 0
        repository.set_status(session, job, "failed" if error else "succeeded", error=error)


async def _write(
    serving: Serving, job: ExportJob, users: Sequence[str], out: io.TextIOBase
) -> None:
    """Every customer's lines, a chunk at a time, with the progress written between chunks."""
    members = job.kind == "segment_members"
    # A recommendations export stores its query as the request's schema filled it in.
    query = None if members else RecommendQuery.model_validate(job.params)
    wanted = {k: job.params[k] for k in ("rfm_group", "churn_risk") if job.params.get(k)}
    writer = csv.writer(out) if job.format == "csv" else None
    if writer is not None:
        writer.writerow(MEMBER_COLUMNS if members else RECOMMENDATION_COLUMNS)
    for start in range(0, len(users), CHUNK):
        chunk = users[start : start + CHUNK]
        attributes: dict[str, dict[str, Any]] = {}
        if members:
            attributes = await run_in_threadpool(_attributes, serving, chunk)
        for user_id in chunk:
            answer = await segments.answer_of(serving, user_id) if members or wanted else None
            if wanted and (answer is None or not segments.matches(answer, wanted)):
                continue
            if members:
                record = _member(answer, user_id, attributes)
                rows = [] if record is None else [member_row(record)]
            else:
                assert query is not None
                body = await recommendations.recommend(user_id, query, serving)
                record = orjson.loads(body)
                rows = _recommendation_rows(record)
            if record is None:
                continue
            if writer is None:
                out.write(orjson.dumps(record).decode() + "\n")
            else:
                writer.writerows(rows)
            await asyncio.sleep(0)  # requests in flight go first
        await run_in_threadpool(_progress, serving, job.id, min(start + CHUNK, len(users)))


def _attributes(serving: Serving, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    with serving.factory() as session:
        return repository.attributes_of(session, user_ids)


def _member(
    answer: dict[str, Any] | None, user_id: str, attributes: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """A member's GET /segment answer with their attributes (None: erased meanwhile)."""
    if answer is None or user_id not in attributes:
        return None
    return {**answer, "attributes": attributes[user_id]}


def _recommendation_rows(answer: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for rank, item in enumerate(answer["items"], start=1):
        reason = item.get("reason") or {}
        rows.append(
            [
                answer["user_id"],
                rank,
                item["item_id"],
                item["score"],
                reason.get("type", ""),
                reason.get("item_id") or "",
                answer["source"],
                answer["model_version"],
            ]
        )
    return rows


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The response model inside a field's annotation (``RfmOut | None`` -> RfmOut)."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _columns(model: type[BaseModel], prefix: str = "") -> list[str]:
    """A response model's fields as flat column names (``rfm_recency_days``)."""
    columns = []
    for name, field in model.model_fields.items():
        inner = _model_in(field.annotation)
        columns += [prefix + name] if inner is None else _columns(inner, f"{prefix}{name}_")
    return columns


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and key != "attributes":
            flat.update(_flatten(value, f"{prefix}{key}_"))
        else:
            flat[prefix + key] = value
    return flat


#: A member's CSV columns: every field of GET /segment's answer, then their attributes.
MEMBER_COLUMNS = (*_columns(SegmentOut), "attributes")


def member_row(record: dict[str, Any]) -> list[Any]:
    """A member's CSV row (objects and lists as JSON, absent values empty)."""
    flat = _flatten(record)
    row = []
    for column in MEMBER_COLUMNS:
        value = flat.get(column)
        row.append(orjson.dumps(value).decode() if isinstance(value, dict | list) else value)
    return row
