"""Annotated dependencies: what a handler's signature says it needs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar, get_origin

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from app import metrics
from app.cache import Cache
from app.config import Settings
from app.db import pop_after_commit
from app.security.keys import Forbidden, Principal, Unauthorized
from app.security.tokens import TokenExpired, TokenInvalid, TokenVerifier, WrongCustomer
from app.serving_state import ServingState

log = logging.getLogger(__name__)


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


async def get_cache(request: Request) -> Cache:
    """The app's cache."""
    return request.app.state.cache


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One unit of work per request: commit on success, roll back on error, then run hooks."""
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
        await run_in_threadpool(session.commit)
    except BaseException:
        await run_in_threadpool(session.rollback)
        raise
    finally:
        await run_in_threadpool(session.close)
    for callback in pop_after_commit(session):
        await callback()


async def get_serving_state(request: Request) -> ServingState:
    """This worker's serving state, for the changes a request applies in it at once."""
    return request.app.state.registry


M = TypeVar("M", bound=BaseModel)


def query_model(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that validates the query string into `model` (declare it `frozen`).

    It answers as FastAPI's ``Annotated[Model, Query()]`` does (422 with ``query.<field>`` paths,
    repeated parameters for list fields, unknown parameters ignored) at a fraction of the cost:
    FastAPI's query-model resolution took a quarter of a cached ``/recommend``. A request without
    a query string gets one shared default instance. Document the parameters with
    ``openapi_extra=query_openapi(model)`` on the route.
    """
    lists = frozenset(
        name for name, field in model.model_fields.items() if get_origin(field.annotation) is list
    )
    default = model()

    async def dependency(request: Request) -> M:
        params = request.query_params
        if not params:
            return default
        data = {key: params.getlist(key) if key in lists else params[key] for key in params}
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError(
                [{**e, "loc": ("query", *e["loc"])} for e in errors]
            ) from None

    return dependency


def query_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI query parameters of `model`, as FastAPI would document them."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        parameter = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field_schema,
        }
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        parameters.append(parameter)
    return {"parameters": parameters}


def client_address(request: Request) -> str:
    """The address rate limits and failed authentications are counted against."""
    return request.client.host if request.client else "unknown"


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    return request.headers.get("x-api-key")


#: Marks the dependencies `require` makes, with their scope (read by app/openapi.py).
SCOPE_ATTRIBUTE = "tastemaker_scope"
#: Marks the ones that also take a customer token, with how (read by app/openapi.py).
TOKEN_ATTRIBUTE = "tastemaker_token"
#: Where a customer token's own id must appear: the path's `user_id`, every event of the body
#: (checked by the events service), or nowhere (catalogue reads).
TokenUse = Literal["path", "body", "any"]


async def _authenticate(request: Request, client: str) -> Principal:
    """The one place a presented credential becomes a principal, failures counted and logged."""
    state = request.app.state
    # An address that failed too often is refused before its key is looked at.
    state.limiter.check_failures(client)
    try:
        return await state.keyring.authenticate(
            _presented_key(request), client, request.headers.get("origin")
        )
    except (Unauthorized, TokenInvalid) as exc:
        # What was presented is never logged, only that it failed and why.
        metrics.AUTH_FAILURES.inc()
        log.warning(
            "authentication failed",
            extra={"fields": {"reason": exc.detail, "client": client, "path": request.url.path}},
        )
        # An authentic token that ran out is no guess at a secret: not counted against the address.
        if not isinstance(exc, TokenExpired):
            await state.limiter.failed(client)
        raise


async def _customer(
    request: Request, principal: Principal, use: TokenUse | None, client: str
) -> None:
    """Keep a customer token to its routes and its own id; count it per customer and address."""
    assert principal.customer is not None
    if use is None or "customer" not in principal.scopes:
        raise Forbidden(
            "a customer token reaches only GET /recommend/{its id}, GET /items/{id}, "
            "GET /items/{id}/similar and POST /events of its own id; use an API key from a backend"
        )
    if use == "path" and request.path_params.get("user_id") != principal.customer:
        raise WrongCustomer("this token is bound to another customer than the one in the path")
    limiter = request.app.state.limiter
    await limiter.hit(principal.customer, "customer")
    await limiter.hit(client, "customer_address")


def require(
    scope: str, *, token: TokenUse | None = None
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the caller, checks `scope` and counts the rate limit.

    With `token`, a customer token is accepted too, bound to its own id as `token` says.
    """

    async def dependency(request: Request) -> Principal:
        client = client_address(request)
        principal = await _authenticate(request, client)
        request.state.key_name = principal.name  # for the access line (app/access.py)
        if principal.customer is not None:
            await _customer(request, principal, token, client)
            return principal
        if scope not in principal.scopes:
            raise Forbidden(f"this key lacks the {scope!r} scope this endpoint needs")
        await request.app.state.limiter.hit(principal.name, scope)
        return principal

    setattr(dependency, SCOPE_ATTRIBUTE, scope)
    setattr(dependency, TOKEN_ATTRIBUTE, token)
    return dependency


async def get_token_verifier(request: Request) -> TokenVerifier:
    """The app's token secrets (to mint tokens)."""
    return request.app.state.keyring.tokens


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CacheDep = Annotated[Cache, Depends(get_cache)]
# scope="function": commit before the response is sent, so a failed commit is the answer.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ServingStateDep = Annotated[ServingState, Depends(get_serving_state)]
ReadKey = Depends(require("read"))
WriteKey = Depends(require("write"))
AdminKey = Depends(require("admin"))
#: A read key, or a customer token for the path's own `user_id`.
OwnRead = Depends(require("read", token="path"))
#: A read key, or any customer token (catalogue reads).
CatalogRead = Depends(require("read", token="any"))
#: A write key, or a customer token whose every event is its own (the service checks).
OwnWrite = Depends(require("write", token="body"))
TokenVerifierDep = Annotated[TokenVerifier, Depends(get_token_verifier)]
