"""HTTP routes of campaign exports (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import FileResponse

from app.deps import AdminKey, SessionDep
from app.errors import ErrorOut
from app.exports import service
from app.exports.schemas import ExportIn, ExportOut
from app.training.serving import ServingDep

router = APIRouter(tags=["exports"], dependencies=[AdminKey])
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/exports", status_code=status.HTTP_202_ACCEPTED)
def create_export(body: ExportIn, session: SessionDep, serving: ServingDep) -> ExportOut:
    """Start an export in the background; poll `GET /exports/{id}`, then download it."""
    return ExportOut.model_validate(service.request_export(session, serving, body))


@router.get("/exports")
def list_exports(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ExportOut]:
    """The latest exports, newest first."""
    return [ExportOut.model_validate(job) for job in service.list_exports(session, limit)]


@router.get("/exports/{export_id}")
def get_export(export_id: JobId, session: SessionDep) -> ExportOut:
    """An export's state and progress; `download_url` once it succeeded."""
    return ExportOut.model_validate(service.get_export(session, export_id))


@router.get(
    "/exports/{export_id}/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}},
        404: {"model": ErrorOut, "description": "No such export, or its file was withdrawn"},
        409: {"model": ErrorOut, "description": "The export has not succeeded (yet)"},
    },
)
def download_export(export_id: JobId, session: SessionDep) -> FileResponse:
    """The export's file, streamed (CSV or JSON lines)."""
    path, media_type, name = service.download(session, export_id)
    return FileResponse(path, media_type=media_type, filename=name)
