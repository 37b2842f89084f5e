"""Minting customer tokens for a backend that asks (POST /tokens)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from app.config import Settings
from app.errors import InvalidInput, NotFound
from app.security.tokens import TokenVerifier
from app.tokens.schemas import TokenIn, TokenOut

VISITOR_PREFIX = "v_"


def issue(verifier: TokenVerifier, data: TokenIn, settings: Settings) -> TokenOut:
    """A token from the first listed secret for a customer or an (invented) visitor id."""
    if verifier.signing_kid is None:
        raise NotFound("customer tokens are disabled: set TASTEMAKER_TOKEN_SECRETS to enable them")
    if data.ttl_seconds > settings.token_max_ttl_seconds:
        raise InvalidInput(
            f"ttl_seconds may be at most {settings.token_max_ttl_seconds} "
            "(TASTEMAKER_TOKEN_MAX_TTL_SECONDS)",
            fields=[
                {"path": "body.ttl_seconds", "message": "longer than allowed", "type": "too_long"}
            ],
        )
    subject = data.user_id or VISITOR_PREFIX + secrets.token_urlsafe(16)
    now = time.time()
    token, expires_at = verifier.mint(
        subject, ttl_seconds=data.ttl_seconds, visitor=data.visitor, now=now
    )
    return TokenOut(
        token=token,
        user_id=subject,
        visitor=data.visitor,
        kid=verifier.signing_kid,
        expires_at=datetime.fromtimestamp(expires_at, UTC),
        expires_in=expires_at - int(now),
    )
