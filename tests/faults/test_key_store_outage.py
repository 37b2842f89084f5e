"""The key store is down when the service starts: authentication fails closed, not open.

A key exists in the (private) PostgreSQL store; the store is stopped before the app starts. Until
the key ring has been read once, every endpoint but /health and /ready answers 503 with
Retry-After, whatever key is sent (a key from settings would be accepted: see
test_postgres_outage). Once the store answers, the stored key works and no key is
401; when the store goes down again, the keys already read stay valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.db import make_engine, make_sessionmaker
from app.main import create_app
from app.security import repository
from app.security.keys import generate_key, hash_key
from app.security.models import ApiKey
from tests.faults.servers import PostgresServer
from tests.faults.support import make_settings, wait_for

EVENT = {"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}


@pytest.fixture
def restart_pg(private_pg: PostgresServer) -> Iterator[PostgresServer]:
    """The private PostgreSQL, started again after the test whatever happened."""
    yield private_pg
    if not private_pg.is_running():
        private_pg.start()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create_key(url: str) -> str:
    key = generate_key()
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        repository.add(
            session, ApiKey(name="crm", prefix=key[:8], key_hash=hash_key(key), scopes=["write"])
        )
    engine.dispose()
    return key


def _refused_until_read(response) -> bool:
    return (
        response.status_code == 503
        and int(response.headers["retry-after"]) >= 1
        and response.json()["error"] == "service_unavailable"
    )


def test_a_store_down_at_start_up_fails_closed(
    tmp_path: Path, pg_url: str, restart_pg: PostgresServer
) -> None:
    key = _create_key(pg_url)
    # Loopback, no key in settings: the old ring took the unread store for an empty one and let
    # everybody in as admin.
    settings = make_settings(tmp_path, pg_url, None, auth_failure_limit="1000/minute")
    restart_pg.stop()
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503  # answered, says the store is down
        for headers in ({}, _auth("tm_wrong"), _auth(key)):
            assert _refused_until_read(client.get("/recommend/u1", headers=headers))
            assert _refused_until_read(client.post("/events", json=EVENT, headers=headers))
        assert _refused_until_read(client.get("/models"))

        restart_pg.start()
        wait_for(
            lambda: client.post("/events", json=EVENT, headers=_auth(key)).status_code == 200,
            30,
            "the stored key working once the store answers",
        )
        assert client.get("/recommend/u1").status_code == 401
        assert client.get("/recommend/u1", headers=_auth("tm_wrong")).status_code == 401

        # Keys read once stay valid through a later outage (and others stay refused).
        restart_pg.stop()
        asyncio.run(client.app.state.keyring.refresh(force=True))
        assert client.get("/recommend/u1", headers=_auth(key)).status_code not in (401, 403)
        assert client.get("/recommend/u1").status_code == 401
        assert client.get("/recommend/u1", headers=_auth("tm_wrong")).status_code == 401
