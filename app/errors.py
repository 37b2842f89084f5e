"""Domain errors and the one place that renders them as `{"error", "detail", "fields"?}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match


class FieldError(BaseModel):
    """One invalid field of a request."""

    path: str
    message: str
    type: str | None = None


class ErrorOut(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "validation_error",
                    "detail": "body.events.0.type: unknown event type 'tap'",
                    "fields": [
                        {
                            "path": "events.0.type",
                            "message": "unknown event type 'tap'",
                            "type": "event_type",
                        }
                    ],
                }
            ]
        }
    )

    error: str = Field(description="A stable machine-readable code, e.g. `not_found`")
    detail: str = Field(description="A sentence that says what was wrong")
    fields: list[FieldError] | None = Field(None, description="Invalid fields (422 only)")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": description}
    for code, description in {
        400: "The body is not JSON",
        401: "No or invalid API key",
        403: "The key lacks the scope",
        404: "Unknown id",
        413: "Body or batch too large",
        422: "Invalid input (with field paths)",
        429: "Rate limit exceeded",
        503: "A dependency is down; retry after `Retry-After` seconds",
    }.items()
}


class AppError(Exception):
    """Base of every error a service may raise; carries its HTTP status and error code."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFound(AppError):
    """The thing asked for does not exist."""

    status_code = 404
    code = "not_found"


class Conflict(AppError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class InvalidInput(AppError):
    """Input that passed the schema but breaks a rule of the domain."""

    status_code = 422
    code = "validation_error"

    def __init__(self, detail: str, *, fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.fields = fields or []


class PayloadTooLarge(AppError):
    """The request body or a batch exceeds the configured limit."""

    status_code = 413
    code = "payload_too_large"


class ModelNotReady(AppError):
    """No trained model can answer yet."""

    status_code = 503
    code = "model_not_ready"


class ServiceUnavailable(AppError):
    """A dependency (the database) is down; the client should retry."""

    status_code = 503
    code = "service_unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


def error_body(code: str, detail: str, fields: list[dict[str, Any]] | None = None) -> dict:
    """The JSON body every error shares."""
    body: dict[str, Any] = {"error": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def _field_list(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fields = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        fields.append(
            {"path": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type")}
        )
    return fields


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def install_error_handlers(app: FastAPI) -> None:
    """Render domain errors, validation errors and HTTP errors in one JSON shape."""

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        fields = getattr(exc, "fields", None)
        return JSONResponse(
            error_body(exc.code, exc.detail, fields), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_list(jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"}))
        first = fields[0] if fields else {"path": "", "message": "invalid request"}
        detail = f"{first['path'] or 'request'}: {first['message']}"
        if len(fields) > 1:
            detail += f" (and {len(fields) - 1} more)"
        return JSONResponse(error_body("validation_error", detail, fields), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = exc.headers
        if exc.status_code == 405:
            # The router names the methods of the first route it met on this path only.
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return JSONResponse(error_body(code, detail), exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this request's path."""
    routes = request.app.router.routes
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def install_database_error_handlers(app: FastAPI) -> None:
    """Render database outages as 503 with Retry-After, and constraint races as 409."""
    from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        return JSONResponse(
            error_body("conflict", "the write conflicts with data stored concurrently; retry"), 409
        )

    @app.exception_handler(OperationalError)
    async def _operational(_: Request, exc: OperationalError) -> JSONResponse:
        return JSONResponse(
            error_body("service_unavailable", "the database is unavailable; retry later"),
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def _dbapi(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return JSONResponse(
                error_body("service_unavailable", "the database connection was lost; retry later"),
                503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse(error_body("bad_request", "the database refused the request"), 400)
