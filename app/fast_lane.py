"""A pure ASGI lane for the hot read routes, ahead of FastAPI's routing.

``GET /recommend/{user_id}`` and ``GET /segment/{user_id}`` carry most of the traffic, and on a
cached answer FastAPI's routing, dependency resolution and exception middleware cost more CPU
than the answer itself. The lane answers these routes with the very objects their
``APIRoute`` declares, read from the route when the app is built: the path parameter's field
(its validation), the dependencies in their order (the key or customer-token check with its
scope, the token's binding to the path's id and the rate limits, the query model, the serving
context), the endpoint and the ``Response`` it returns.
Errors raised on the lane go to the app's exception handlers (:mod:`app.errors`), the one
place that renders them. Everything else is the framework's: other paths and methods, a
``root_path``, an app with dependency overrides, and a path parameter that does not validate (the framework renders that 422
after the key check, as it always has).

It sits inside the request-id, access-line and metrics middleware, CORS and the body-size
limit, so those apply on both paths; ``tests/api/test_fast_lane.py`` compares the two byte for
byte, headers included. ``TASTEMAKER_FAST_LANE=false`` turns it off.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Dependency = Callable[[Request], Awaitable[Any]]


class NotLaneable(ValueError):
    """A route declares something the lane cannot do exactly as the framework does."""


@dataclass(frozen=True)
class Lane:
    """One route the lane answers: ``prefix`` + a path parameter without ``/``."""

    route: APIRoute
    prefix: str
    dependencies: tuple[tuple[str | None, Dependency], ...]

    @classmethod
    def of(cls, route: APIRoute) -> Lane:
        """The lane of ``route``; raise :class:`NotLaneable` unless every step is plain."""
        dependant = route.dependant
        prefix, _, rest = route.path.partition("{")
        params = dependant.path_params
        if (
            route.methods != {"GET"}
            or len(params) != 1
            or rest != f"{params[0].name}}}"
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or not inspect.iscoroutinefunction(route.endpoint)
        ):
            raise NotLaneable(f"{route.path}: only GET routes with one path parameter")
        steps = []
        for sub in dependant.dependencies:
            plain = (
                sub.request_param_name
                and not (sub.dependencies or sub.path_params or sub.query_params)
                and not (sub.header_params or sub.cookie_params or sub.body_params)
                and inspect.iscoroutinefunction(sub.call)
                and not inspect.isasyncgenfunction(sub.call)
            )
            if not plain or sub.call is None:
                raise NotLaneable(f"{route.path}: dependency {sub.call!r} takes more than Request")
            steps.append((sub.name, sub.call))
        return cls(route, prefix, tuple(steps))

    def path_value(self, path: str) -> str | None:
        """The validated path parameter of ``path``; None when the framework must answer."""
        value = path[len(self.prefix) :]
        if not value or "/" in value:
            return None
        field = self.route.dependant.path_params[0]
        validated, errors = field.validate(value, {}, loc=("path", field.alias))
        return None if errors else validated


def lanes(routes: Iterable[Any], paths: Sequence[str]) -> dict[str, Lane]:
    """The lanes of the routes at ``paths``, keyed by their literal prefix; raise
    :class:`NotLaneable` when one is missing or declares what the lane cannot do."""
    by_path = {route.path: route for route in routes if isinstance(route, APIRoute)}
    missing = set(paths) - set(by_path)
    if missing:
        raise NotLaneable(f"no routes at {sorted(missing)}")
    built = [Lane.of(by_path[path]) for path in paths]
    return {lane.prefix: lane for lane in built}


class FastLane:
    """Answer the lanes' routes directly; hand every other request to the framework."""

    def __init__(self, app: ASGIApp, *, lanes: dict[str, Lane]) -> None:
        self.app = app
        self.lanes = lanes

    def _lane(self, path: str) -> Lane | None:
        slash = path.find("/", 1)
        return self.lanes.get(path[: slash + 1]) if slash > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope.get("root_path")
            or scope["app"].dependency_overrides  # tests' overrides apply on the framework path
        ):
            await self.app(scope, receive, send)
            return
        lane = self._lane(scope["path"])
        value = lane.path_value(scope["path"]) if lane is not None else None
        if lane is None or value is None:
            await self.app(scope, receive, send)
            return
        route = lane.route
        name = route.dependant.path_params[0].name
        scope["route"], scope["endpoint"] = route, route.endpoint
        scope["path_params"] = {name: value}
        request = Request(scope, receive, send)
        try:
            values: dict[str, Any] = {name: value}
            for param, call in lane.dependencies:
                result = await call(request)
                if param is not None:
                    values[param] = result
            response = await route.endpoint(**values)
        except Exception as exc:
            response = await _handled(scope["app"], request, exc)
        if not isinstance(response, Response):
            raise TypeError(f"{route.path} must return a Response to be on the fast lane")
        await response(scope, receive, send)


async def _handled(app: FastAPI, request: Request, exc: Exception) -> Response:
    """The answer of the app's own exception handler, found as its exception middleware
    finds it (by status code for HTTP errors, then by class); re-raise when there is none."""
    handlers = app.exception_handlers
    handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
    for cls in type(exc).__mro__:
        if handler is not None:
            break
        handler = handlers.get(cls)
    if handler is None:
        raise exc
    if inspect.iscoroutinefunction(handler):
        return await handler(request, exc)
    sync = cast(Callable[[Request, Exception], Response], handler)
    return await run_in_threadpool(sync, request, exc)
