"""One served, trained demo shop for every dashboard test, seen in the session's one headless
Chromium (the `browser` fixture of tests/conftest.py).

The service runs as `tastemaker serve` (uvicorn) on a free 127.0.0.1 port, with one admin key,
on a synthetic shop trained once. Screenshots go to tests/artifacts/dashboard/ (or
$TASTEMAKER_TEST_ARTIFACTS), ignored by git.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.migrate import upgrade
from app.security.keys import hash_key
from app.training.runner import train_now
from tests.faults.servers import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "tm_dashboard_admin_key"
READ_KEY = "tm_dashboard_read_key"
SHOP = generate_shop(n_users=300, n_items=120, n_events=12_000, seed=3)
ARTIFACTS = Path(os.environ.get("TASTEMAKER_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))


@dataclass
class Served:
    """The running service: its base URL and an HTTP client holding the admin key."""

    url: str
    api: httpx.Client


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard")
    keys = [
        {"name": "dashboard", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]},
        {"name": "reader", "sha256": hash_key(READ_KEY), "scopes": ["read"]},
    ]
    settings = Settings(
        data_dir=root / "data",
        model_dir=root / "models",
        api_keys=keys,
        model_poll_seconds=0.5,
        rate_limits={"read": "100000/second", "write": "100000/second", "admin": "100000/second"},
    )
    settings.data_dir.mkdir()
    upgrade(settings.resolved_database_url)
    import_shop(make_sessionmaker(make_engine(settings.resolved_database_url)), SHOP)
    train_now(settings)
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASTEMAKER_")}
    env = {**clean, **settings.child_environment(), "TASTEMAKER_ACCESS_LOG": "false"}
    log = root / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "1"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{url}/ready", timeout=2).json()["checks"]["model"]["version"]:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        yield Served(url, api)
    finally:
        api.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the screenshots go (a directory git ignores)."""
    path = ARTIFACTS / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    print(f"dashboard screenshots: {path}")
    return path
