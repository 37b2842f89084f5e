"""The fast lane answers exactly what the framework answers: status, headers and body.

Two apps on one store and one trained bundle, one with ``fast_lane`` on (the default) and one
with it off, take the same requests interleaved (the same ``X-Request-ID``, so that header
matches too): answers, cache misses then hits, cold starts, bad options and ids, missing and
wrong keys, customer tokens (their own id, another's, expired, altered, from a foreign origin), a
rate limit running out, CORS. Bodies are compared byte for byte once the one
random field (``recommendation_id``) and ``computed_at`` are masked; the access lines must name the same route,
status and key. Only the time-derived rate-limit waits (headers and the 429 body's "retry in Ns") may differ,
by a second at most.
"""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from fastapi.testclient import TestClient

from app.logs import ACCESS
from app.main import create_app
from app.security.keys import hash_key
from tests.api.test_serving import _buyer, _retrain, _seed
from tests.api.test_tokens import readme_token
from tests.conftest import override, wait_for_version

READ_KEY, ADMIN_KEY = "tm_read_fast_1", "tm_admin_fast_2"
ORIGIN = "https://shop.example"
TOKEN_SECRET = {"kid": "k1", "secret": "s" * 40, "cors_origins": [ORIGIN]}
# The two fields that differ between any two answers: a random id, and when each app computed.
_VARYING = re.compile(rb'"(recommendation_id|computed_at)":"[^"]+"')
# Derived from the clock: two apps asked a few milliseconds apart may straddle a second.
_TIMED = {"retry-after", "ratelimit-reset"}
# The 429 body says the same wait in words.
_RETRY_IN = re.compile(rb"retry in (\d+)s")


def _app_settings(settings, fast: bool):
    keys = [
        {"name": "shop-web", "sha256": hash_key(READ_KEY), "scopes": ["read"]},
        {"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]},
    ]
    return override(
        settings,
        fast_lane=fast,
        api_keys=keys,
        cors_origins=[ORIGIN],
        token_secrets=[TOKEN_SECRET],
        # Each app counts its own requests, so both run out of budget at the same request.
        rate_limit_storage="memory",
        rate_limits={
            "read": "18/minute",
            "write": "100/minute",
            "admin": "100/minute",
            "customer": "100/minute",
            "customer_address": "100/minute",
        },
        cache_prefix=f"tmtest:{uuid.uuid4().hex[:8]}:",
    )


@pytest.fixture
def two_apps(client, settings):
    """(fast, framework) clients over one trained store; each with its own cache."""
    _seed(settings)
    run = _retrain(client)
    assert run["status"] == "succeeded", run["error"]
    with (
        TestClient(create_app(_app_settings(settings, True))) as fast,
        TestClient(create_app(_app_settings(settings, False))) as framework,
    ):
        wait_for_version(fast, 1)
        wait_for_version(framework, 1)
        yield fast, framework


def _token(user: str, ttl: int = 600) -> dict[str, str]:
    token = readme_token(TOKEN_SECRET["secret"], TOKEN_SECRET["kid"], user, ttl=ttl)
    return {"Authorization": f"Bearer {token}"}


def _requests(buyer: str) -> list[tuple[str, str, dict[str, str]]]:
    read = {"Authorization": f"Bearer {READ_KEY}"}
    own, other = _token(buyer), _token("someone-else")
    tampered = {"Authorization": own["Authorization"][:-4] + "0000"}
    return [
        ("GET", f"/recommend/{buyer}", read),  # computed
        ("GET", f"/recommend/{buyer}", read),  # cached
        ("GET", f"/recommend/{buyer}?n=3&explain=false&exclude=i1&exclude=i2", read),
        ("GET", f"/recommend/{buyer}?placement=home&offset=2", read),
        ("GET", f"/recommend/{buyer}", {**read, "Origin": ORIGIN}),
        ("GET", f"/recommend/{buyer}", {"X-API-Key": ADMIN_KEY}),
        ("GET", "/recommend/someone-new", read),  # cold start
        ("GET", f"/recommend/{buyer}?n=0", read),  # 422 from the query model
        ("GET", f"/recommend/{buyer}?placement=nowhere&n=x", read),
        ("GET", "/recommend/has%20space", read),  # 422 from the path (framework)
        ("GET", "/recommend/" + "u" * 129, read),
        ("GET", "/recommend/", read),  # 404
        ("GET", f"/recommend/{buyer}/more", read),
        ("HEAD", f"/recommend/{buyer}", read),  # not a GET: the framework's 405
        ("GET", f"/recommend/{buyer}", {}),  # 401 without a key
        ("GET", f"/recommend/{buyer}?n=0", {}),  # the key is checked before the query
        ("GET", f"/recommend/{buyer}", {"Authorization": "Bearer tm_wrong"}),
        ("GET", f"/segment/{buyer}", read),
        ("GET", f"/segment/{buyer}", read),
        ("GET", "/segment/someone-new", read),
        ("GET", "/segment/bad%2Fid", read),
        ("GET", f"/segment/{buyer}", {}),
        ("GET", f"/items/{buyer}/similar", read),  # not on the lane
        # Customer tokens: their own id only, never /segment, from their secret's origins.
        ("GET", f"/recommend/{buyer}", own),
        ("GET", f"/recommend/{buyer}?n=3", {**own, "Origin": ORIGIN}),
        ("GET", f"/recommend/{buyer}", {**own, "Origin": "https://evil.example"}),
        ("GET", f"/recommend/{buyer}", other),  # 403: another customer's
        ("GET", "/recommend/someone-else", own),
        ("GET", f"/recommend/{buyer}?n=0", other),  # the binding is checked before the query
        ("GET", "/recommend/has%20space", own),
        ("GET", f"/recommend/{buyer}", _token(buyer, ttl=-1)),  # 401 token_expired
        ("GET", f"/recommend/{buyer}", tampered),  # 401 token_invalid
        ("GET", f"/segment/{buyer}", own),  # 403: never a segment
        ("GET", f"/items/{buyer}/similar", own),
        *[("GET", f"/recommend/{buyer}", read)] * 6,  # the read budget runs out (429)
        ("GET", f"/segment/{buyer}", read),
    ]


def _comparable(response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in _TIMED}
    body = _RETRY_IN.sub(b"retry in *s", _VARYING.sub(rb'"\1":"*"', response.content))
    return response.status_code, headers, body


def _waits(response) -> list[int]:
    """Every clock-derived wait an answer states, in its headers and in its body."""
    named = [int(response.headers[name]) for name in sorted(_TIMED & set(response.headers))]
    return named + [int(m) for m in _RETRY_IN.findall(response.content)]


def test_the_fast_lane_answers_what_the_framework_answers(two_apps, caplog):
    fast, framework = two_apps
    buyer = _buyer()
    statuses = []
    with caplog.at_level(logging.INFO, logger=ACCESS):
        for number, (method, path, headers) in enumerate(_requests(buyer)):
            headers = {**headers, "X-Request-ID": f"req-{number}"}
            a = fast.request(method, path, headers=headers)
            b = framework.request(method, path, headers=headers)
            assert _comparable(a) == _comparable(b), (method, path)
            waits = zip(_waits(a), _waits(b), strict=True)
            assert all(abs(x - y) <= 1 for x, y in waits), (method, path)
            statuses.append(a.status_code)
    # The sequence reached every kind of answer, the lane's and the framework's.
    assert {200, 401, 403, 404, 405, 422, 429} <= set(statuses)
    assert statuses[1] == 200 and statuses[-1] == 429
    lines = [r.fields for r in caplog.records if r.name == ACCESS]
    assert len(lines) == 2 * len(statuses)
    for a, b in zip(lines[::2], lines[1::2], strict=True):
        assert {k: v for k, v in a.items() if k != "duration_ms"} == {
            k: v for k, v in b.items() if k != "duration_ms"
        }
    assert any(f["route"] == "/recommend/{user_id}" and f["key"] == "shop-web" for f in lines)
    assert any(f["route"] == "/recommend/{user_id}" and f["key"] == "token:k1" for f in lines)


def test_a_route_the_lane_cannot_take_exactly_is_refused_at_start():
    from fastapi import APIRouter, Header

    from app.fast_lane import NotLaneable, lanes

    router = APIRouter()

    @router.get("/recommend/{user_id}")
    async def with_header(user_id: str, x_thing: str = Header()) -> None:  # pragma: no cover
        return None

    with pytest.raises(NotLaneable):
        lanes(router.routes, ["/recommend/{user_id}"])
    with pytest.raises(NotLaneable):
        lanes(router.routes, ["/segment/{user_id}"])
