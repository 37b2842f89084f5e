"""The published contract, checked the way an integrator would: `schemathesis run` with every
check against `tastemaker serve` on a trained shop, through its own /openapi.json.

One server for the module (slow to start): keys are configured, so the checks also see that
every operation refuses a request without a key; `--generation-deterministic` keeps the run
the same from one CI run to the next.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
KEY = "tm_contract_all_scopes"
SHOP = generate_shop(n_users=60, n_items=40, n_events=2_000, seed=11)
# A few of the checks the configuration turns on, which the run must show it performed.
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "ignored_auth",
    "allow_header_conformance",
    "use_after_free",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("contract")
    keys = [{"name": "contract", "sha256": hash_key(KEY), "scopes": ["read", "write", "admin"]}]
    settings = Settings(
        data_dir=root / "data",
        model_dir=root / "models",
        api_keys=keys,
        rate_limits={"read": "100000/second", "write": "100000/second", "admin": "100000/second"},
        auth_failure_limit="100000/second",
        # POST /tokens mints with it (without one it answers 404).
        token_secrets=[{"kid": "contract", "secret": "c" * 40}],
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
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/ready", timeout=2).json()["checks"]["model"]["version"]:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_schemathesis_finds_no_failure(served, tmp_path):
    tool = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert tool, "schemathesis is missing: pip install -e '.[test]'"
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            tool,
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{served}/openapi.json",
            "--header",
            f"Authorization: Bearer {KEY}",
            "--max-examples",
            "20",
            # It would start a trainer process per example (POST /retrain is tested elsewhere).
            "--exclude-path",
            "/retrain",
            "--generation-deterministic",
            "--workers",
            "1",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary
    assert "Unresolvable" not in done.stdout, summary
    ran = {name for name in CHECKS if f'"{name}"' in report.read_text()}
    assert ran == set(CHECKS), f"checks that never ran: {set(CHECKS) - ran}"
