"""API keys and scopes, start-up refusal, rate limits, signed webhooks, CORS, no key in logs."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.events.webhooks import sign
from app.main import create_app
from app.security.keys import AnonymousOnPublicInterface, hash_key
from tests.conftest import override

READ_KEY, WRITE_KEY, ADMIN_KEY = "tm_read_secret_1", "tm_write_secret_2", "tm_admin_secret_3"
EVENT = {"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}


def _keys() -> list[dict]:
    return [
        {"name": "web", "sha256": hash_key(READ_KEY), "scopes": ["read"]},
        {"name": "ingest", "sha256": hash_key(WRITE_KEY), "scopes": ["write"]},
        {"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]},
    ]


@pytest.fixture
def secured(settings):
    with TestClient(create_app(override(settings, **{"api_keys": _keys()}))) as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_no_key_is_401_with_a_json_body(secured):
    response = secured.get("/recommend/u1")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert secured.get("/recommend/u1", headers=_auth("tm_nobody")).status_code == 401
    assert secured.get("/health").status_code == 200  # liveness needs no key


def test_scopes(secured):
    assert secured.get("/recommend/u1", headers=_auth(READ_KEY)).status_code == 200
    response = secured.post("/events", json=EVENT, headers=_auth(READ_KEY))
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert secured.post("/events", json=EVENT, headers=_auth(WRITE_KEY)).status_code == 200
    assert secured.get("/recommend/u1", headers=_auth(WRITE_KEY)).status_code == 200
    assert secured.delete("/users/u1", headers=_auth(WRITE_KEY)).status_code == 403
    assert secured.get("/users/u1/export", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
    assert secured.post("/retrain", headers=_auth(WRITE_KEY)).status_code == 403


def test_stored_keys_can_be_created_and_revoked(settings):
    from typer.testing import CliRunner

    from app.cli import cli
    from app.config import get_settings

    env = settings.child_environment()
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        created = runner.invoke(cli, ["keys", "create", "crm", "--scope", "write"], env=env)
        assert created.exit_code == 0, created.output
        key = created.output.strip().splitlines()[-1]
        assert key.startswith("tm_")
        with TestClient(create_app(settings)) as client:
            assert client.get("/recommend/u1").status_code == 401  # a key exists now
            assert client.post("/events", json=EVENT, headers=_auth(key)).status_code == 200
            listed = runner.invoke(cli, ["keys", "list"], env=env)
            assert "crm" in listed.output and key not in listed.output
            assert runner.invoke(cli, ["keys", "revoke", "crm"], env=env).exit_code == 0
            asyncio.run(client.app.state.keyring.refresh(force=True))
            assert client.post("/events", json=EVENT, headers=_auth(key)).status_code == 401
            # The name of a revoked key can be used again; a second active one cannot.
            again = runner.invoke(cli, ["keys", "create", "crm", "--scope", "write"], env=env)
            assert again.exit_code == 0, again.output
            new_key = again.output.strip().splitlines()[-1]
            twice = runner.invoke(cli, ["keys", "create", "crm", "--scope", "read"], env=env)
            assert twice.exit_code == 1 and "active key" in twice.output
            asyncio.run(client.app.state.keyring.refresh(force=True))
            assert client.post("/events", json=EVENT, headers=_auth(new_key)).status_code == 200
            assert client.post("/events", json=EVENT, headers=_auth(key)).status_code == 401
    finally:
        get_settings.cache_clear()


def test_public_interface_without_keys_refuses_to_start(settings):
    public = override(settings, **{"host": "0.0.0.0"})
    with (
        pytest.raises(AnonymousOnPublicInterface, match="TASTEMAKER_ALLOW_ANONYMOUS"),
        TestClient(create_app(public)),
    ):
        pass
    allowed = override(public, **{"allow_anonymous": True})
    with TestClient(create_app(allowed)) as client:
        assert client.get("/recommend/u1").status_code == 200
    with TestClient(create_app(override(public, **{"api_keys": _keys()}))) as client:
        assert client.get("/recommend/u1", headers=_auth(READ_KEY)).status_code == 200


def test_rate_limit_answers_429_with_headers(settings):
    # Embedded: counted in process memory; production: counted in Redis across replicas.
    storage = "redis" if settings.redis_url else "memory"
    limited = override(
        settings,
        **{
            "api_keys": _keys(),
            "rate_limits": {"read": "3/minute", "write": "100/minute"},
            "rate_limit_storage": storage,
        },
    )
    with TestClient(create_app(limited)) as client:
        answers = [client.get("/recommend/u1", headers=_auth(READ_KEY)) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        limited_answer = answers[-1]
        assert limited_answer.json()["error"] == "rate_limited"
        assert 1 <= int(limited_answer.headers["retry-after"]) <= 60
        assert limited_answer.headers["ratelimit-limit"] == "3"
        assert limited_answer.headers["ratelimit-remaining"] == "0"
        # Limits are per key: another key is not affected.
        assert client.get("/recommend/u1", headers=_auth(WRITE_KEY)).status_code == 200


def _webhook(client: TestClient, body: bytes, secret: str = "s3cret", at: float | None = None):
    timestamp = str(int(at if at is not None else time.time()))
    return client.post(
        "/webhooks/events",
        content=body,
        headers={
            "content-type": "application/json",
            "x-tastemaker-timestamp": timestamp,
            "x-tastemaker-signature": sign(secret, timestamp, body),
        },
    )


def test_signed_webhooks(settings):
    with TestClient(create_app(override(settings, **{"webhook_secret": "s3cret"}))) as client:
        user = f"w{uuid.uuid4().hex[:8]}"
        body = orjson.dumps(
            {
                "events": [
                    {"event_id": f"{user}-1", "user_id": user, "item_id": "i1", "type": "click"}
                ]
            }
        )
        assert _webhook(client, body).json() == {"accepted": 1, "duplicates": 0, "conflicts": []}
        # The same events in a new delivery (signed afresh): event ids make it harmless.
        assert _webhook(client, body, at=time.time() - 10).json() == {
            "accepted": 0,
            "duplicates": 1,
            "conflicts": [],
        }
        assert _webhook(client, body, secret="wrong").status_code == 401
        stale = _webhook(client, body, at=time.time() - 3600)
        assert stale.status_code == 401 and stale.json()["error"] == "bad_signature"
        unsigned = client.post("/webhooks/events", content=body)
        assert unsigned.status_code == 401
        bad = orjson.dumps({"events": [{"user_id": user, "type": "click"}]})
        invalid = _webhook(client, bad)
        assert invalid.status_code == 422 and invalid.json()["fields"][0]["path"].endswith(
            "item_id"
        )
        assert len(client.get(f"/users/{user}/events").json()) == 1
    with TestClient(create_app(settings)) as client:
        assert _webhook(client, b"{}").status_code == 404


def test_cors_preflight_for_configured_origins(settings):
    configured = override(settings, **{"cors_origins": ["https://shop.example"]})
    with TestClient(create_app(configured)) as client:
        response = client.options(
            "/recommend/u1",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
        )
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.options(
            "/recommend/u1",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in other.headers


def test_a_rejected_key_never_reaches_the_logs(secured, caplog, capfd):
    secret = "tm_" + uuid.uuid4().hex
    with caplog.at_level(logging.DEBUG):
        response = secured.get("/recommend/u1", headers=_auth(secret))
        secured.post("/events", json=EVENT, headers={"X-API-Key": secret})
    assert response.status_code == 401
    assert secret not in response.text
    assert secret not in caplog.text
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err


def test_settings_refuse_bad_limits_and_keys():
    with pytest.raises(ValueError, match="RATE_LIMITS"):
        Settings(rate_limits={"read": "lots"})
    with pytest.raises(ValueError):
        Settings(api_keys=[{"name": "x", "sha256": "not-hex", "scopes": ["read"]}])


def _storage(settings: Settings) -> str:
    # Embedded: counted in process memory; production: counted in Redis across replicas.
    return "redis" if settings.redis_url else "memory"


def test_a_non_ascii_webhook_signature_is_a_401_json(settings):
    with TestClient(create_app(override(settings, **{"webhook_secret": "s3cret"}))) as client:
        response = client.post(
            "/webhooks/events",
            content=orjson.dumps(EVENT),
            headers={
                "content-type": "application/json",
                "x-tastemaker-timestamp": str(int(time.time())),
                "x-tastemaker-signature": "sha256=caf\u00e9".encode(),
            },
        )
        assert response.status_code == 401
        assert response.json()["error"] == "bad_signature"


def test_a_replayed_webhook_is_refused_and_stored_once(settings):
    with TestClient(create_app(override(settings, **{"webhook_secret": "s3cret"}))) as client:
        user = f"w{uuid.uuid4().hex[:8]}"
        # No event ids: only the signature can tell a replay from a new delivery.
        body = orjson.dumps({"events": [{"user_id": user, "item_id": "i1", "type": "click"}]})
        at = time.time()
        assert _webhook(client, body, at=at).json() == {
            "accepted": 1,
            "duplicates": 0,
            "conflicts": [],
        }
        replay = _webhook(client, body, at=at)
        assert replay.status_code == 409
        assert replay.json()["error"] == "replayed"
        assert "already accepted" in replay.json()["detail"]
        assert len(client.get(f"/users/{user}/events").json()) == 1
        # A delivery that was not stored may be sent again with the same signature.
        bad = orjson.dumps({"events": [{"user_id": user, "type": "click"}]})
        assert _webhook(client, bad, at=at).status_code == 422
        assert _webhook(client, bad, at=at).status_code == 422


def test_the_webhook_is_rate_limited_per_address(settings):
    limited = override(
        settings,
        **{
            "webhook_secret": "s3cret",
            "rate_limits": {"read": "1000/minute", "write": "2/minute"},
            "rate_limit_storage": _storage(settings),
        },
    )
    with TestClient(create_app(limited)) as client:
        now = time.time()
        answers = [_webhook(client, orjson.dumps(EVENT), at=now - i) for i in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[-1].json()["error"] == "rate_limited"
        assert int(answers[-1].headers["retry-after"]) >= 1


def test_failed_authentications_are_limited_per_address(settings):
    limited = override(
        settings,
        **{
            "api_keys": _keys(),
            "webhook_secret": "s3cret",
            "auth_failure_limit": "3/minute",
            "rate_limit_storage": _storage(settings),
        },
    )
    with TestClient(create_app(limited)) as client:
        assert client.get("/recommend/u1", headers=_auth(READ_KEY)).status_code == 200
        failures = [
            client.get("/recommend/u1"),
            client.get("/recommend/u1", headers=_auth("tm_guess_1")),
            _webhook(client, orjson.dumps(EVENT), secret="guess"),
        ]
        assert [f.status_code for f in failures] == [401, 401, 401]
        past = client.get("/recommend/u1", headers=_auth("tm_guess_2"))
        assert past.status_code == 429 and past.json()["error"] == "rate_limited"
        assert 1 <= int(past.headers["retry-after"]) <= 60
        # Refused before the key is looked at: a right guess is not told apart from a wrong one.
        assert client.get("/recommend/u1", headers=_auth(READ_KEY)).status_code == 429
        assert _webhook(client, orjson.dumps(EVENT)).status_code == 429
