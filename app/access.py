"""One pure ASGI middleware per request: its id, its access line and its metrics.

The request id is the caller's ``X-Request-ID`` when it is a plausible id (at most 128
characters of letters, digits and ``-_.:``), else a new one; it is returned in the response's
``X-Request-ID`` and written in the access line with the key's name (never the key), the route
template, the status and the duration. Request counts and latencies go to
:mod:`app.metrics` through label children bound once per (method, route, status).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs, metrics

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HEADER = b"x-request-id"
#: Where the authenticated key's name is left for the access line (``request.state``).
KEY_NAME = "key_name"


def request_id(scope: Scope) -> str:
    """The caller's request id when it is a plausible one, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == _HEADER:
            text = value.decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return text
            break
    return os.urandom(8).hex()


def route_of(scope: Scope) -> str:
    """The matched route's template (``/recommend/{user_id}``), or ``unmatched``."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class AccessMiddleware:
    """Request id, access line and request metrics for every HTTP request."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope)
        status = 500  # what the server answers when the app raises before a response starts
        header = (_HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            metrics.observe_request(scope["method"], route, status, seconds)
            if self.access_log:
                self._log(scope, rid, route, status, seconds)

    @staticmethod
    def _log(scope: Scope, rid: str, route: str, status: int, seconds: float) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        client = scope.get("client")
        logs.access(
            f"{scope['method']} {route} {status}",
            {
                "request_id": rid,
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "key": state.get(KEY_NAME),
                "client": client[0] if client else None,
            },
        )
