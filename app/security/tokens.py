"""Customer-bound tokens: short-lived, HMAC-signed, verified statelessly on every request.

A token is ``tm1.{kid}.{payload}.{signature}``:

- ``kid`` names the secret that signed it (``TASTEMAKER_TOKEN_SECRETS``): every listed secret
  verifies, so a new one can be added, shipped to the shop's backends and the old one removed;
- ``payload`` is the unpadded base64url of a JSON object ``{"sub": <customer or visitor id>,
  "vis": <true for an anonymous visitor>, "scp": ["customer"], "exp": <unix seconds>}``;
- ``signature`` is the lowercase hex HMAC-SHA256, with the secret, of ``tm1.{kid}.{payload}``:
  the webhooks' one signature (:func:`app.security.signing.sign`) with ``tm1.{kid}`` in place of
  the timestamp.

A shop's backend mints them offline with the recipe in README; ``POST /tokens`` mints the same
with the first listed secret. Checks, in order: the shape, a listed ``kid``, the signature (in
constant time), the payload, then the expiry, which must be in the future and no further than
``TASTEMAKER_TOKEN_MAX_TTL_SECONDS`` ahead. A token that fails is 401 ``token_invalid``, an
authentic one that ran out 401 ``token_expired``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.config import Settings
from app.errors import AppError
from app.schemas import ExternalId
from app.security.signing import sign

FORMAT = "tm1"
#: What a token may be granted; a scope the service does not know grants nothing.
TOKEN_SCOPES = frozenset({"customer"})
#: Longer tokens are refused before anything is decoded.
MAX_TOKEN_CHARS = 2048
#: Clocks of the shop's backend and of the service may differ by this much.
CLOCK_SKEW_SECONDS = 60


class TokenInvalid(AppError):
    """A token that was not signed by a listed secret, or does not say what a token says."""

    status_code = 401
    code = "token_invalid"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class TokenExpired(TokenInvalid):
    """An authentic token past its expiry."""

    code = "token_expired"


class WrongCustomer(AppError):
    """A customer token asking about, or writing for, another customer."""

    status_code = 403
    code = "wrong_customer"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    sub: ExternalId
    vis: bool = False
    scp: list[str] = Field(min_length=1, max_length=16)
    exp: int = Field(ge=0, lt=2**40)  # unix seconds, within datetime's range


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    kid: str
    subject: str
    visitor: bool
    scopes: frozenset[str]
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signature(secret: str, kid: str, payload: str) -> str:
    """The hex HMAC-SHA256 of ``tm1.{kid}.{payload}`` (the webhooks' signature function)."""
    return sign(secret, f"{FORMAT}.{kid}", payload.encode()).removeprefix("sha256=")


def mint(
    secret: str,
    kid: str,
    subject: str,
    *,
    expires_at: int,
    visitor: bool = False,
    scopes: tuple[str, ...] = ("customer",),
) -> str:
    """A token for `subject` signed with `secret` under `kid` (what README's recipe does)."""
    claims: dict[str, object] = {"sub": subject, "scp": list(scopes), "exp": expires_at}
    if visitor:
        claims["vis"] = True
    payload = _b64(orjson.dumps(claims))
    return f"{FORMAT}.{kid}.{payload}.{signature(secret, kid, payload)}"


def looks_like_token(presented: str) -> bool:
    """Whether a presented credential is a token (API keys start with ``tm_``)."""
    return presented.startswith(FORMAT + ".")


class TokenVerifier:
    """The listed secrets by kid, with the origins each serves; verifies and mints tokens."""

    def __init__(self, settings: Settings) -> None:
        self.secrets = {s.kid: s.secret.get_secret_value() for s in settings.token_secrets}
        self.origins = {s.kid: frozenset(s.cors_origins) for s in settings.token_secrets}
        self.signing_kid = settings.token_secrets[0].kid if settings.token_secrets else None
        self.max_ttl = settings.token_max_ttl_seconds

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The claims of an authentic, current token; raise TokenInvalid or TokenExpired."""
        now = time.time() if now is None else now
        parts = token.split(".") if len(token) <= MAX_TOKEN_CHARS else []
        if len(parts) != 4 or parts[0] != FORMAT:
            raise TokenInvalid(f"a token reads {FORMAT}.<kid>.<payload>.<signature>")
        _, kid, payload, presented = parts
        secret = self.secrets.get(kid)
        if secret is None:
            raise TokenInvalid(f"the token's key id {kid[:32]!r} is not (or no longer) accepted")
        expected = signature(secret, kid, payload).encode()
        # Bytes: compare_digest refuses a str with non-ASCII characters.
        if not hmac.compare_digest(expected, presented.encode("utf-8", "replace")):
            raise TokenInvalid("the token's signature does not match: it was altered")
        try:
            claims = _Payload.model_validate_json(_unb64(payload))
        except (ValidationError, ValueError, binascii.Error):
            raise TokenInvalid("the token's payload is not the documented JSON") from None
        scopes = frozenset(claims.scp) & TOKEN_SCOPES
        if not scopes:
            raise TokenInvalid(f"the token grants none of the scopes {sorted(TOKEN_SCOPES)}")
        if claims.exp <= now:
            # The moment, not "Ns ago": the same token gets the same answer on every path.
            moment = datetime.fromtimestamp(claims.exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise TokenExpired(f"the token expired at {moment}; ask the shop for a new one")
        if claims.exp > now + self.max_ttl + CLOCK_SKEW_SECONDS:
            raise TokenInvalid(
                f"the token expires more than {self.max_ttl}s from now "
                "(TASTEMAKER_TOKEN_MAX_TTL_SECONDS)"
            )
        return Claims(kid, claims.sub, claims.vis, scopes, claims.exp)

    def allows_origin(self, kid: str, origin: str | None) -> bool:
        """Whether a page at `origin` may present tokens of `kid` (no origin: not a browser)."""
        return origin is None or origin in self.origins.get(kid, frozenset())

    def mint(self, subject: str, *, ttl_seconds: int, visitor: bool, now: float) -> tuple[str, int]:
        """A token from the first listed secret and its expiry (unix seconds)."""
        assert self.signing_kid is not None
        expires_at = int(now) + ttl_seconds
        token = mint(
            self.secrets[self.signing_kid],
            self.signing_kid,
            subject,
            expires_at=expires_at,
            visitor=visitor,
        )
        return token, expires_at
