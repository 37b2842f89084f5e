"""Shared fixtures: real PostgreSQL and Redis next to the embedded SQLite/in-process defaults.

With CI=true an unreachable server fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "TASTEMAKER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TASTEMAKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ONLINE_RETAIL = DATA_DIR / "online-retail" / "online-retail-all.csv.xz"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Fail in CI, skip elsewhere, when a server a test needs does not answer."""
    if _reachable(host, port):
        return
    message = f"{name} at {host}:{port} is unreachable"
    if IN_CI:
        pytest.fail(message + " (CI=true: storage tests must run against real servers)")
    pytest.skip(message)


def require_online_retail() -> Path:
    """The Online Retail file, or a clear failure when ../shared/data is absent."""
    if not ONLINE_RETAIL.exists():
        pytest.fail(f"{ONLINE_RETAIL} is missing: tests read the shared datasets from ../shared")
    return ONLINE_RETAIL


TABLES = (
    "event",
    "item",
    '"user"',
    "training_run",
    "model_version",
    "api_key",
    "ingest_change",
    "erasure",
    "export_job",
    "outbox",
    "subscription",
    "customer_state",
    "customer_change",
    "dispatcher_lease",
    "user_merge",
    "store_identity",  # emptied: the next use gives the store a new identity
)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A private PostgreSQL database for this test session, migrated to head."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    name = f"tastemaker_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (migrating once per session)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """An empty, migrated database: SQLite file or the session's PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "tastemaker.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_database")
    _truncate(url)
    yield url


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (tests isolate themselves with a unique key prefix)."""
    require_server("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(params=["embedded", "production"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Settings:
    """Settings for the embedded shape (SQLite + in-process) and production (PostgreSQL + Redis)."""
    common = {
        "data_dir": tmp_path / "data",
        "model_dir": tmp_path / "models",
        "cache_prefix": f"tmtest:{uuid.uuid4().hex[:8]}:",
        "model_poll_seconds": 0.2,
        # Tests call as fast as they can; test_security.py checks the limits themselves.
        "rate_limits": {
            "read": "100000/second",
            "write": "100000/second",
            "admin": "100000/second",
        },
    }
    if request.param == "embedded":
        path = tmp_path / "tastemaker.db"
        shutil.copy(sqlite_template, path)
        return Settings(database_url=f"sqlite:///{path}", redis_url=None, **common)
    url = request.getfixturevalue("pg_database")
    _truncate(url)
    return Settings(database_url=url, redis_url=request.getfixturevalue("redis_url"), **common)


@pytest.fixture
def client(settings: Settings) -> Iterator:
    """A test client of an app on `settings`, with its lifespan running."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


def override(settings: Settings, **changes: object) -> Settings:
    """A validated copy of `settings` with some fields changed."""
    return Settings.model_validate({**settings.model_dump(), **changes})


def wait_for_version(client, version: int, timeout: float = 20.0) -> None:
    """Wait until the app behind `client` serves model `version` (its /ready says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").json()["checks"]["model"]["version"] == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"version {version} was not loaded within {timeout}s")


CHROMIUM = os.environ.get("TASTEMAKER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TASTEMAKER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI=true: the browser tests must run in a real browser)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's) under selenium, one for the whole session.

    Missing, it fails the tests that use it under CI=true and skips them elsewhere.
    """
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _unavailable(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is missing: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1366,900",  # a laptop screen
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
