"""Signed webhook ingestion for marketing-automation tools.

The sender signs `"{timestamp}.{raw body}"` with HMAC-SHA256 and the shared secret, and sends
`X-Tastemaker-Timestamp: <unix seconds>` and `X-Tastemaker-Signature: sha256=<hex>`. A
signature older than the tolerance is refused, and within the window each signature is accepted
once (remembered in the cache until it would expire), so a captured request cannot be replayed;
a delivery that failed (an error answer) may be retried with the same signature. The route is
rate limited per client address, and bad signatures count as failed authentications.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.cache import Cache
from app.deps import CacheDep, SessionDep, SettingsDep, client_address
from app.errors import AppError, ErrorOut, NotFound
from app.events import service
from app.events.schemas import EventBatchIn, IngestResult
from app.security.signing import sign

router = APIRouter(tags=["events"])
TIMESTAMP_HEADER = "x-tastemaker-timestamp"
SIGNATURE_HEADER = "x-tastemaker-signature"
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


class BadSignature(AppError):
    """A webhook whose signature or timestamp does not check out."""

    status_code = 401
    code = "bad_signature"


class ReplayedWebhook(AppError):
    """A signature that was already accepted: the same delivery sent again."""

    status_code = 409
    code = "replayed"


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: int,
) -> int:
    """The signed unix time; raise BadSignature unless the signature is valid and recent."""
    if not timestamp or not signature:
        raise BadSignature(f"send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers")
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise BadSignature(f"{TIMESTAMP_HEADER} must be unix seconds")
    sent_at = int(timestamp)
    if abs(now - sent_at) > tolerance:
        raise BadSignature(f"the signed timestamp is more than {tolerance}s away from now")
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (a TypeError, a 500).
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise BadSignature("the signature does not match the body")
    return sent_at


async def _first_use(cache: Cache, fallback: Cache, key: str, ttl: float) -> bool:
    """Whether `key` is claimed now for the first time within `ttl` (Redis, else this worker)."""
    count = await cache.incr(key, ttl)
    if count is None:  # Redis is down: remember it in this worker at least
        count = await fallback.incr(key, ttl)
    return count == 1


async def signed_body(
    request: Request, settings: SettingsDep, cache: CacheDep
) -> AsyncIterator[bytes]:
    """The body of a signed delivery, accepted once; released again if the request fails.

    Order: failed-authentication limit, the per-address rate limit (scope `write`), the
    signature, then the claim on the signature.
    """
    if settings.webhook_secret is None:
        raise NotFound("webhook ingestion is disabled: set TASTEMAKER_WEBHOOK_SECRET to enable it")
    limiter = request.app.state.limiter
    client = client_address(request)
    limiter.check_failures(client)
    await limiter.hit(f"webhook:{client}", "write")
    body = await request.body()
    now = time.time()
    signature = request.headers.get(SIGNATURE_HEADER) or ""
    try:
        sent_at = verify(
            settings.webhook_secret.get_secret_value(),
            request.headers.get(TIMESTAMP_HEADER),
            signature,
            body,
            now,
            settings.webhook_tolerance_seconds,
        )
    except BadSignature:
        await limiter.failed(client)
        raise
    key = "webhook:seen:" + hashlib.sha256(signature.encode("utf-8", "replace")).hexdigest()
    # Remembered for as long as the signature would still be accepted.
    ttl = sent_at + settings.webhook_tolerance_seconds - now + 1
    fallback: Cache = request.app.state.webhook_replays
    if not await _first_use(cache, fallback, key, ttl):
        raise ReplayedWebhook(
            "this signed delivery was already accepted; sign each new delivery with a new timestamp"
        )
    try:
        yield body
    except BaseException:
        # Not stored (invalid body, database down): the sender may retry the same delivery.
        await cache.delete(key)
        await fallback.delete(key)
        raise


SignedBody = Annotated[bytes, Depends(signed_body, scope="function")]


@router.post(
    "/webhooks/events",
    responses={
        409: {"model": ErrorOut, "description": "This signed delivery was already accepted"}
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            # The same component as POST /events (EventBatchIn), so that every $ref resolves.
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EventBatchIn"}}
            },
        }
    },
)
async def webhook_events(
    body: SignedBody, session: SessionDep, cache: CacheDep, settings: SettingsDep
) -> IngestResult:
    """Ingest a signed batch of events (same validation and idempotency as POST /events)."""
    try:
        batch = EventBatchIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    return await run_in_threadpool(service.ingest, session, cache, batch, settings)
