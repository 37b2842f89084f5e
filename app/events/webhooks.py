"""Signed webhook ingestion for marketing-automation tools.

The sender signs `"{timestamp}.{raw body}"` with HMAC-SHA256 and the shared secret, and sends
`X-Tastemaker-Timestamp: <unix seconds>` and `X-Tastemaker-Signature: sha256=<hex>`. A
signature older than the tolerance is refused, so a captured request cannot be replayed later;
within the window, event ids make a replay harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.deps import CacheDep, SessionDep, SettingsDep
from app.errors import AppError, NotFound
from app.events import service
from app.events.schemas import EventBatchIn, IngestResult

router = APIRouter(tags=["events"])
TIMESTAMP_HEADER = "x-tastemaker-timestamp"
SIGNATURE_HEADER = "x-tastemaker-signature"


class BadSignature(AppError):
    """A webhook whose signature or timestamp does not check out."""

    status_code = 401
    code = "bad_signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: int,
) -> None:
    """Raise BadSignature unless the signature is valid and recent."""
    if not timestamp or not signature:
        raise BadSignature(f"send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise BadSignature(f"{TIMESTAMP_HEADER} must be unix seconds") from None
    if abs(now - sent_at) > tolerance:
        raise BadSignature(f"the signed timestamp is more than {tolerance}s away from now")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise BadSignature("the signature does not match the body")


@router.post(
    "/webhooks/events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EventBatchIn.model_json_schema()}},
        }
    },
)
async def webhook_events(
    request: Request, session: SessionDep, cache: CacheDep, settings: SettingsDep
) -> IngestResult:
    """Ingest a signed batch of events (same validation and idempotency as POST /events)."""
    if settings.webhook_secret is None:
        raise NotFound("webhook ingestion is disabled: set TASTEMAKER_WEBHOOK_SECRET to enable it")
    body = await request.body()
    verify(
        settings.webhook_secret.get_secret_value(),
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        body,
        time.time(),
        settings.webhook_tolerance_seconds,
    )
    try:
        batch = EventBatchIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    return await run_in_threadpool(service.ingest, session, cache, batch, settings)
