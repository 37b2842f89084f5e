"""API keys with scopes: hashing, the key ring each worker checks requests against."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import AppError, ServiceUnavailable
from app.security import repository
from app.security.models import ApiKey
from app.security.tokens import TokenVerifier, looks_like_token

SCOPES = ("read", "write", "admin")
# A wider scope includes the narrower ones: admin can write, write can read.
IMPLIED = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
STORE_REFRESH_SECONDS = 5.0
# How soon a key ring that has never been read tries the store again.
STORE_RETRY_SECONDS = 1.0

log = logging.getLogger(__name__)


class Unauthorized(AppError):
    """No key, or a key nobody issued."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    """A valid key without the scope this endpoint needs (or a token out of its bounds)."""

    status_code = 403
    code = "forbidden"


class AnonymousOnPublicInterface(RuntimeError):
    """No API key exists while the service would listen beyond this machine."""


def hash_key(key: str) -> str:
    """The SHA-256 (hex) a key is stored and compared as."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A new random key (shown once, stored only as its hash)."""
    return "tm_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and scopes, anonymous (client address), or a customer token
    (named after its kid, bound to `customer`, a customer's or an anonymous visitor's id)."""

    name: str
    scopes: frozenset[str]
    anonymous: bool = False
    customer: str | None = None
    visitor: bool = False


@dataclass(frozen=True)
class _Entry:
    name: str
    digest: bytes
    scopes: frozenset[str]


def _scopes(names: list[str]) -> frozenset[str]:
    return frozenset().union(*(IMPLIED[s] for s in names if s in IMPLIED))


class KeyRing:
    """Keys from settings and from the store (refreshed every few seconds).

    It fails closed: until the store has been read once, only keys from settings are accepted and
    every other request answers 503 with Retry-After — an unreadable store must not look like a
    store without keys. Anonymous access needs to know that no key exists anywhere: none in
    settings, and the store read with none ever created. Keys read once stay valid while the
    store is down later.
    """

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.factory = factory
        self._static = [
            _Entry(k.name, bytes.fromhex(k.sha256), _scopes(list(k.scopes)))
            for k in settings.api_keys
        ]
        self._stored: list[_Entry] = []
        # Once any key was created, keys stay required: revoking the last one must not open
        # the service to anonymous callers.
        self._store_has_keys = False
        # Whether the store has been read once; until then nobody is authenticated.
        self.loaded = False
        # Decided whenever the ring changes, so a request tests one attribute.
        self._anonymous = False
        self._loaded_at = float("-inf")
        self._failing = False
        self.tokens = TokenVerifier(settings)

    def _read_store(self) -> tuple[list[_Entry], bool]:
        with self.factory() as session:
            rows: list[ApiKey] = list(repository.all_keys(session))
        active = [
            _Entry(r.name, bytes.fromhex(r.key_hash), _scopes(r.scopes))
            for r in rows
            if r.revoked_at is None
        ]
        return active, bool(rows)

    def load(self) -> bool:
        """Read the stored keys now (blocking); False, keeping the last good set, if it failed."""
        try:
            self._stored, self._store_has_keys = self._read_store()
        except SQLAlchemyError as exc:
            if not self._failing:  # once per outage, not once per retry
                log.warning("API keys cannot be read from the store: %s", exc.__class__.__name__)
            self._failing = True
            return False
        was_failing, self._failing = self._failing, False
        if was_failing and not self.loaded and not self.has_keys and not self._anonymous_allowed():
            # Started while the store was down, and it turns out to hold no key: stay closed.
            log.error(
                "no API key exists and the service listens on %s: every request is refused "
                "(401); create one with `tastemaker keys create NAME --scope read`",
                self.settings.host,
            )
        self.loaded = True
        self._anonymous = not self.has_keys and self._anonymous_allowed()
        return True

    async def refresh(self, *, force: bool = False) -> None:
        """Reload stored keys when stale; keep the last good set while the store is down."""
        now = time.monotonic()
        if not force and now - self._loaded_at < STORE_REFRESH_SECONDS:
            return
        # Claim the refresh before awaiting, so concurrent requests keep the current keys
        # instead of each starting its own read.
        self._loaded_at = now
        if not await run_in_threadpool(self.load):
            # Retry sooner while nothing has been read: until then every request is refused.
            retry_in = STORE_RETRY_SECONDS if not self.loaded else STORE_REFRESH_SECONDS / 2
            self._loaded_at = now - STORE_REFRESH_SECONDS + retry_in

    @property
    def has_keys(self) -> bool:
        """Whether any key is known to exist (then every request needs one)."""
        return bool(self._static or self._store_has_keys)

    def _anonymous_allowed(self) -> bool:
        return self.settings.is_loopback or self.settings.allow_anonymous

    def check_startup(self) -> None:
        """Refuse anonymous access on a public interface unless explicitly allowed.

        With the store unreadable it cannot be known whether keys exist: the service starts and
        refuses every request (503) until the store has been read.
        """
        if self._static or self._anonymous_allowed():
            return
        if not self.loaded:
            log.warning(
                "the key store could not be read: every endpoint but /health and /ready answers "
                "503 until it can"
            )
            return
        if self._store_has_keys:
            return
        raise AnonymousOnPublicInterface(
            f"refusing to serve on {self.settings.host} without API keys: create one with "
            "`tastemaker keys create NAME --scope read`, set TASTEMAKER_API_KEYS, or set "
            "TASTEMAKER_ALLOW_ANONYMOUS=true to serve without keys on purpose"
        )

    async def authenticate(
        self, presented: str | None, client: str, origin: str | None = None
    ) -> Principal:
        """The principal for a presented key or customer token; anonymous only when no key
        exists at all. A token is checked on its own (no store); a page presenting one must be
        at an origin its secret lists."""
        await self.refresh()
        if self._anonymous:
            return Principal(f"anonymous:{client}", IMPLIED["admin"], anonymous=True)
        if presented and looks_like_token(presented):
            claims = self.tokens.verify(presented)
            if not self.tokens.allows_origin(claims.kid, origin):
                shown = (origin or "")[:200]
                raise Forbidden(
                    f"tokens of key id {claims.kid!r} are not accepted from the origin {shown!r}"
                )
            return Principal(
                f"token:{claims.kid}",
                claims.scopes,
                customer=claims.subject,
                visitor=claims.visitor,
            )
        found: _Entry | None = None
        if presented:
            digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
            # Compare against every key, in constant time each, so timing says nothing.
            for entry in (*self._static, *self._stored):
                if hmac.compare_digest(entry.digest, digest):
                    found = entry
        if found is not None:
            # A key from settings is valid whether or not the store has been read.
            return Principal(found.name, found.scopes)
        if not self.loaded:
            # No key, or one only the unread store could vouch for: neither yes nor no yet.
            raise ServiceUnavailable(
                "API keys cannot be checked yet: the key store has not been read; retry later",
                retry_after=math.ceil(STORE_RETRY_SECONDS),
            )
        if not presented:
            raise Unauthorized("this endpoint needs an API key: send `Authorization: Bearer <key>`")
        raise Unauthorized("the API key is not valid")


def check_before_serving(settings: Settings) -> None:
    """Read the key ring once and apply `KeyRing.check_startup` (before binding any socket)."""
    from app.db import make_engine, make_sessionmaker

    engine = make_engine(settings.resolved_database_url)
    try:
        ring = KeyRing(settings, make_sessionmaker(engine))
        ring.load()
        ring.check_startup()
    finally:
        engine.dispose()
