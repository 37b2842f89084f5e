"""Customer-bound tokens: the documented format, what a token may reach, expiry, tampering and
rotation, POST /tokens, per-origin CORS, per-customer rate limits, and no token in the logs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.logs import ACCESS
from app.main import create_app
from app.security import tokens
from app.security.keys import hash_key
from app.security.tokens import TokenExpired, TokenInvalid, TokenVerifier, mint
from tests.conftest import override

READ_KEY, WRITE_KEY, ADMIN_KEY = "tm_tok_read_1", "tm_tok_write_2", "tm_tok_admin_3"
OLD = {"kid": "2026-11", "secret": "o" * 40}
NEW = {"kid": "2026-12", "secret": "n" * 40, "cors_origins": ["https://shop.example"]}
SHOP_ORIGIN = "https://shop.example"


def readme_token(secret: str, kid: str, customer_id: str, ttl: int = 900, **extra) -> str:
    """The README's recipe, written out here without the app's code (and `extra` claims, which
    the tampering tests need); the README's own block runs in a test below."""
    claims = {"sub": customer_id, "scp": ["customer"], "exp": int(time.time()) + ttl, **extra}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    message = f"tm1.{kid}.{payload}".encode()
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"tm1.{kid}.{payload}.{signature}"


def _keys() -> list[dict]:
    return [
        {"name": "web", "sha256": hash_key(READ_KEY), "scopes": ["read"]},
        {"name": "backend", "sha256": hash_key(WRITE_KEY), "scopes": ["write"]},
        {"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]},
    ]


def _secured(settings: Settings, **changes: object) -> Settings:
    changes = {"auth_failure_limit": "1000/minute", **changes}
    return override(settings, api_keys=_keys(), token_secrets=[NEW, OLD], **changes)


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _token(customer: str, kid: dict = NEW, **extra) -> dict[str, str]:
    return _bearer(readme_token(kid["secret"], kid["kid"], customer, **extra))


def _event(user: str, item: str = "i1", **fields) -> dict:
    return {"user_id": user, "item_id": item, "type": "view", **fields}


@pytest.fixture
def secured(settings):
    with TestClient(create_app(_secured(settings))) as client:
        yield client


def _readme_recipe():
    """The Python block under `<!-- token-recipe -->` in README, run as a backend would."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- token-recipe -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    return namespace["customer_token"]


def test_a_token_minted_with_the_readme_block_is_accepted(settings, monkeypatch):
    customer_token = _readme_recipe()
    # Not the app's function: the block stands alone (the app's mint is made unusable here).
    monkeypatch.setattr(tokens, "mint", None)
    with TestClient(create_app(_secured(settings))) as client:
        token = _bearer(customer_token(NEW["secret"], NEW["kid"], "c5", ttl=300))
        assert client.get("/recommend/c5", headers=token).status_code == 200
        assert client.get("/recommend/c6", headers=token).status_code == 403
        event = {"events": [_event("c5")]}
        assert client.post("/events", json=event, headers=token).json()["accepted"] == 1
        visitor = customer_token(OLD["secret"], OLD["kid"], "v_1", visitor=True)
        assert client.get("/recommend/v_1", headers=_bearer(visitor)).status_code == 200
    assert TokenVerifier(_secured(settings)).verify(visitor).visitor is True


def test_the_readme_recipe_makes_what_the_service_makes():
    verifier = TokenVerifier(Settings(token_secrets=[NEW, OLD]))
    claims = verifier.verify(readme_token(NEW["secret"], NEW["kid"], "c42", vis=True))
    assert (claims.kid, claims.subject, claims.visitor, claims.scopes) == (
        "2026-12",
        "c42",
        True,
        frozenset({"customer"}),
    )
    # The app's own mint produces a token the recipe's reader would parse the same way.
    token, expires_at = verifier.mint("c42", ttl_seconds=60, visitor=False, now=time.time())
    _, kid, payload, _ = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert kid == NEW["kid"] and decoded == {"sub": "c42", "scp": ["customer"], "exp": expires_at}


@pytest.mark.parametrize("fast_lane", [True, False])
def test_a_token_for_a_reads_only_a(settings, fast_lane):
    a, b = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    with TestClient(create_app(_secured(settings, fast_lane=fast_lane))) as client:
        token = _token(a)
        assert client.get(f"/recommend/{a}", headers=token).status_code == 200
        other = client.get(f"/recommend/{b}", headers=token)
        assert other.status_code == 403 and other.json()["error"] == "wrong_customer"
        # Never the segment details (RFM, spend), whoever they are about.
        for path in (f"/segment/{a}", f"/segment/{b}", "/segments", f"/users/{a}"):
            refused = client.get(path, headers=token)
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden", path
            assert "customer token" in refused.json()["detail"]
        # Catalogue reads are anyone's: the item is unknown, not forbidden.
        assert client.get("/items/sku-1", headers=token).status_code == 404
        assert client.get("/items/sku-1/similar", headers=token).status_code in (200, 404, 503)
        # The same requests with a read key still work as before.
        assert client.get(f"/segment/{b}", headers=_bearer(READ_KEY)).status_code in (200, 503)


def test_a_token_posts_only_its_own_events(secured):
    a, b = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    token = _token(a)
    own = secured.post("/events", json={"events": [_event(a)]}, headers=token)
    assert own.status_code == 200 and own.json()["accepted"] == 1
    for batch in ([_event(b)], [_event(a, "i2"), _event(b, "i3")]):
        refused = secured.post("/events", json={"events": batch}, headers=token)
        assert refused.status_code == 403 and refused.json()["error"] == "wrong_customer"
    # Nothing of the refused batches was stored, not even A's event in the mixed one.
    backend = _bearer(WRITE_KEY)
    assert secured.get(f"/users/{b}/events", headers=backend).status_code == 404
    assert len(secured.get(f"/users/{a}/events", headers=backend).json()) == 1
    # Backend routes stay the backend's.
    for method, path, body in (
        ("POST", "/tokens", {"user_id": a}),
        ("POST", f"/users/{a}/merge", {"visitor_id": b}),
        ("POST", "/items", {"items": []}),
        ("PUT", f"/users/{a}", {"attributes": {}}),
        ("DELETE", f"/users/{a}", None),
        ("POST", "/retrain", None),
    ):
        answer = secured.request(method, path, json=body, headers=token)
        assert answer.status_code == 403, (method, path)


def test_expired_tampered_and_unknown_tokens_are_401_with_a_reason(secured):
    def refused(headers: dict[str, str]) -> str:
        answer = secured.get("/recommend/c1", headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Bearer")
        return answer.json()["error"]

    assert refused(_token("c1", ttl=-5)) == "token_expired"
    good = readme_token(NEW["secret"], NEW["kid"], "c1")
    head, kid, payload, signature = good.split(".")
    other = readme_token(NEW["secret"], NEW["kid"], "c2").split(".")[2]
    assert refused(_bearer(f"{head}.{kid}.{other}.{signature}")) == "token_invalid"  # swapped
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert refused(_bearer(f"{head}.{kid}.{payload}.{flipped}")) == "token_invalid"
    non_ascii = {"Authorization": f"Bearer {head}.{kid}.{payload}.é".encode()}
    assert refused(non_ascii) == "token_invalid"  # type: ignore[arg-type]
    in_payload = {"Authorization": f"Bearer {head}.{kid}.é{payload}.{signature}".encode()}
    assert refused(in_payload) == "token_invalid"  # type: ignore[arg-type]
    assert refused(_bearer(f"{head}.{kid}.{payload}")) == "token_invalid"
    assert refused(_token("c1", kid={"kid": "nope", "secret": NEW["secret"]})) == "token_invalid"
    assert refused(_token("c1", kid={**NEW, "secret": "x" * 40})) == "token_invalid"
    assert refused(_token("c1", ttl=10 * 86400)) == "token_invalid"  # beyond the longest life
    # Authentic JSON that is not a token's: no scope the service knows, a bad id.
    assert refused(_token("c1", scp=["admin"])) == "token_invalid"
    assert refused(_token("has space")) == "token_invalid"
    assert refused(_token("c1", exp=-(10**18))) == "token_invalid"
    assert refused(_token("c1", exp=1.5)) == "token_invalid"
    # With an authentic token whose expiry is in the past, the reason is the expiry.
    verifier = TokenVerifier(Settings(token_secrets=[NEW]))
    with pytest.raises(TokenExpired):
        verifier.verify(good, now=time.time() + 3600)
    with pytest.raises(TokenInvalid):
        verifier.verify("tm1." + "a" * 5000)


def test_rotation_old_kid_verifies_while_listed(settings):
    old_token = _token("c1", kid=OLD)
    with TestClient(create_app(_secured(settings))) as client:
        assert client.get("/recommend/c1", headers=old_token).status_code == 200
        minted = client.post("/tokens", json={"user_id": "c1"}, headers=_bearer(WRITE_KEY))
        assert minted.json()["kid"] == NEW["kid"]  # the first listed secret signs
    rotated = override(settings, api_keys=_keys(), token_secrets=[NEW])
    with TestClient(create_app(rotated)) as client:
        answer = client.get("/recommend/c1", headers=old_token)
        assert answer.status_code == 401 and answer.json()["error"] == "token_invalid"
        assert "2026-11" in answer.json()["detail"]
        assert client.get("/recommend/c1", headers=_token("c1")).status_code == 200


def test_post_tokens_for_customers_and_visitors(secured, settings):
    backend = _bearer(WRITE_KEY)
    minted = secured.post("/tokens", json={"user_id": "c7", "ttl_seconds": 120.0}, headers=backend)
    assert minted.status_code == 200, minted.text
    body = minted.json()
    assert body["user_id"] == "c7" and body["visitor"] is False and body["expires_in"] == 120
    assert secured.get("/recommend/c7", headers=_bearer(body["token"])).status_code == 200
    visitor = secured.post("/tokens", json={"visitor": True}, headers=backend).json()
    assert visitor["visitor"] is True and visitor["user_id"].startswith("v_")
    assert TokenVerifier(_secured(settings)).verify(visitor["token"]).visitor is True
    for bad in (
        {},
        {"visitor": False},
        {"visitor": 1},
        {"user_id": None},
        {"user_id": "c7", "ttl_seconds": 7200},
        {"user_id": "c7", "ttl_seconds": "60"},
        {"user_id": "c7", "ttl_seconds": 60.5},
        {"user_id": "c7", "ttl_seconds": True},
        {"user_id": "c7", "scopes": ["read"]},
    ):
        refused = secured.post("/tokens", json=bad, headers=backend)
        assert refused.status_code == 422, bad
        assert refused.json()["error"] == "validation_error"
    # Minting grants more than reading (POST /events): a read key may not.
    assert (
        secured.post("/tokens", json={"user_id": "c7"}, headers=_bearer(READ_KEY)).status_code
        == 403
    )
    maximum = secured.get("/openapi.json").json()["components"]["schemas"]["TokenIn"]
    assert maximum["properties"]["ttl_seconds"]["maximum"] == 3600
    with TestClient(create_app(override(settings, api_keys=_keys()))) as disabled:
        off = disabled.post("/tokens", json={"user_id": "c7"}, headers=backend)
        assert off.status_code == 404 and "TASTEMAKER_TOKEN_SECRETS" in off.json()["detail"]


def test_cors_per_token_secret(secured):
    def preflight(origin: str, method: str = "GET"):
        return secured.options(
            "/recommend/c1",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )

    allowed = preflight(SHOP_ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SHOP_ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert preflight(SHOP_ORIGIN, "POST").status_code == 200
    refused = preflight("https://evil.example")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    # The actual requests: a page of the secret's origin reads the answer.
    page = secured.get("/recommend/c1", headers={**_token("c1"), "Origin": SHOP_ORIGIN})
    assert page.status_code == 200
    assert page.headers["access-control-allow-origin"] == SHOP_ORIGIN
    # A token copied to another site is refused, whatever CORS would let through.
    stolen = secured.get(
        "/recommend/c1", headers={**_token("c1"), "Origin": "https://evil.example"}
    )
    assert stolen.status_code == 403 and "origin" in stolen.json()["detail"]
    # OLD lists no origin: its tokens are for apps, which send none.
    assert secured.get("/recommend/c1", headers=_token("c1", kid=OLD)).status_code == 200
    from_page = secured.get(
        "/recommend/c1", headers={**_token("c1", kid=OLD), "Origin": SHOP_ORIGIN}
    )
    assert from_page.status_code == 403


def test_rate_limits_per_customer_and_per_address(settings):
    storage = "redis" if settings.redis_url else "memory"
    limits = {
        "read": "100/minute",
        "write": "100/minute",
        "customer": "3/minute",
        "customer_address": "5/minute",
    }
    with TestClient(
        create_app(_secured(settings, rate_limits=limits, rate_limit_storage=storage))
    ) as client:
        a, b = _token("ca"), _token("cb")
        statuses = [client.get("/recommend/ca", headers=a).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get("/recommend/ca", headers=a)
        assert limited.json()["error"] == "rate_limited" and "customer" in limited.json()["detail"]
        # Another customer has their own budget, until the address has spent its own (5).
        answers = [client.get("/recommend/cb", headers=b) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [200, 200, 429]
        assert "customer_address" in answers[-1].json()["detail"]
        # Keys are counted as before, on their own.
        assert client.get("/recommend/ca", headers=_bearer(READ_KEY)).status_code == 200


def test_a_token_never_reaches_the_logs(secured, caplog, capfd):
    token = readme_token(NEW["secret"], NEW["kid"], "c9")
    tampered = token[:-2] + "00"
    with caplog.at_level(logging.DEBUG):
        secured.get("/recommend/c9", headers=_bearer(token))
        secured.get("/recommend/c9", headers=_bearer(tampered))
        secured.post("/events", json={"events": [_event("c9")]}, headers=_bearer(token))
    logged = caplog.text + capfd.readouterr().err
    assert token not in logged and tampered not in logged
    assert token.split(".")[3] not in logged
    lines = [r.fields for r in caplog.records if r.name == ACCESS]
    assert [line["key"] for line in lines] == ["token:2026-12", None, "token:2026-12"]


def test_a_token_does_not_open_the_webhook(settings):
    with TestClient(create_app(_secured(settings, webhook_secret="s3cret"))) as client:
        answer = client.post(
            "/webhooks/events", json={"events": [_event("c1")]}, headers=_token("c1")
        )
        assert answer.status_code == 401 and answer.json()["error"] == "bad_signature"


def test_settings_refuse_bad_token_secrets():
    with pytest.raises(ValueError, match="kid"):
        Settings(token_secrets=[OLD, OLD])
    with pytest.raises(ValueError):
        Settings(token_secrets=[{"kid": "k", "secret": "short"}])
    with pytest.raises(ValueError):
        Settings(token_secrets=[{"kid": "a.b", "secret": "s" * 40}])
    env = Settings(token_secrets=[NEW]).child_environment()
    assert (
        Settings.model_validate_json(
            json.dumps({"token_secrets": json.loads(env["TASTEMAKER_TOKEN_SECRETS"])})
        )
        .token_secrets[0]
        .secret.get_secret_value()
        == NEW["secret"]
    )


def test_the_recipe_helper_matches_the_module():
    # mint() is the module's own recipe; the test's is independent of it: both agree.
    expires = int(time.time()) + 100
    ours = mint(NEW["secret"], NEW["kid"], "c1", expires_at=expires)
    verifier = TokenVerifier(Settings(token_secrets=[NEW]))
    assert verifier.verify(ours).expires_at == expires


#: The only operations a customer token reaches (its own id where there is one).
TOKEN_ROUTES = {
    ("GET", "/recommend/{user_id}"),
    ("GET", "/items/{item_id}"),
    ("GET", "/items/{item_id}/similar"),
    ("POST", "/events"),
}


def test_every_other_route_refuses_a_token(secured):
    """Every operation of the app, present and future: a token is refused unless listed above
    (a new route that takes a key refuses tokens without saying anything)."""
    from fastapi.routing import APIRoute

    from app.main import ROUTERS

    token = _token("c1")
    open_routes = {"/health", "/ready", "/webhooks/events"}  # no key: nothing a token adds
    checked = []
    for route in [route for router in ROUTERS for route in router.routes]:
        if not isinstance(route, APIRoute) or route.path in open_routes:
            continue
        path = route.path.replace("{user_id}", "c2")
        for name in route.param_convertors:
            path = path.replace(f"{{{name}}}", "1")
        for method in route.methods:
            answer = secured.request(method, path, headers=token)
            if (method, route.path) in TOKEN_ROUTES:
                assert answer.status_code not in (401, 403) or route.path.startswith("/recommend")
                continue
            checked.append((method, route.path))
            assert answer.status_code == 403, (method, route.path, answer.text)
            assert answer.json()["error"] == "forbidden", (method, route.path)
    assert len(checked) > 25 and ("GET", "/segment/{user_id}") in checked


def test_a_token_is_verified_without_the_store():
    import asyncio

    from sqlalchemy.exc import OperationalError

    from app.errors import ServiceUnavailable
    from app.security.keys import KeyRing

    def unreadable():
        raise OperationalError("SELECT", {}, Exception("the store is down"))

    settings = Settings(api_keys=_keys(), token_secrets=[NEW], host="0.0.0.0")
    ring = KeyRing(settings, unreadable)  # type: ignore[arg-type]
    token = readme_token(NEW["secret"], NEW["kid"], "c1")
    principal = asyncio.run(ring.authenticate(token, "192.0.2.1"))
    assert (principal.customer, principal.name) == ("c1", "token:2026-12")
    assert not ring.loaded
    with pytest.raises(ServiceUnavailable):  # a key only the store could vouch for: not yet
        asyncio.run(ring.authenticate("tm_unknown", "192.0.2.1"))
