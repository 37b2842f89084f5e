"""The published contract: what ``/openapi.json`` says beyond what each route declares.

- the event types this deployment accepts, as an enum (they are a setting);
- how to authenticate (a bearer token or ``X-API-Key``), per operation with the scope it needs,
  so that ``/docs`` has an Authorize button;
- ``/docs`` and ``/redoc`` with their assets from the package (fastapi-offline), no CDN; both
  are off with ``TASTEMAKER_DOCS=false``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from app.config import Settings
from app.deps import SCOPE_ATTRIBUTE, TOKEN_ATTRIBUTE

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, or where an operation says so a customer token, as a bearer token",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def new_app(settings: Settings, **kwargs: Any) -> FastAPI:
    """The FastAPI application, with offline documentation pages unless they are off."""
    if settings.docs:
        return FastAPIOffline(**kwargs)
    return FastAPI(docs_url=None, redoc_url=None, **kwargs)


def document(app: FastAPI, settings: Settings, routers: Iterable[APIRouter]) -> None:
    """Complete the app's OpenAPI document (built once, at the first request for it); `routers`
    are the ones the app includes, without prefixes."""
    build = app.openapi
    routes = [route for router in routers for route in router.routes]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _security(routes, schema)
            _event_types(schema, settings.event_types, settings.signed_value_types)
            _token_ttl(schema, settings.token_max_ttl_seconds)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _scope_of(route: APIRoute) -> tuple[str, str | None] | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        scope = getattr(dependency.call, SCOPE_ATTRIBUTE, None)
        if scope is not None:
            return scope, getattr(dependency.call, TOKEN_ATTRIBUTE, None)
        pending.extend(dependency.dependencies)
    return None


_TOKEN_NOTES = {
    "path": " Or a customer token bound to this `user_id`.",
    "body": " Or a customer token, when every event is its own customer's.",
    "any": " Or a customer token.",
}


def _security(routes: list[Any], schema: dict[str, Any]) -> None:
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        found = _scope_of(route)
        if found is None:
            continue
        scope, token = found
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            note = f"Needs an API key with the `{scope}` scope." + _TOKEN_NOTES.get(token or "", "")
            operation["description"] = (operation.get("description", "") + "\n\n" + note).strip()


def _event_types(schema: dict[str, Any], event_types: list[str], signed: list[str]) -> None:
    """The configured event types as an enum; a value is negative only for the signed ones."""
    event = schema.get("components", {}).get("schemas", {}).get("EventIn")
    if event is None:
        return
    event["properties"]["type"]["enum"] = list(event_types)
    unsigned = [t for t in event_types if t not in signed]
    if unsigned:
        event["if"] = {"properties": {"type": {"enum": unsigned}}, "required": ["type"]}
        event["then"] = {
            "properties": {"value": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}}
        }


def _token_ttl(schema: dict[str, Any], max_ttl: int) -> None:
    """The configured longest token lifetime as the bound of POST /tokens' `ttl_seconds`."""
    token = schema.get("components", {}).get("schemas", {}).get("TokenIn")
    if token is not None:
        token["properties"]["ttl_seconds"]["maximum"] = max_ttl
        token["properties"]["ttl_seconds"]["default"] = min(900, max_ttl)
