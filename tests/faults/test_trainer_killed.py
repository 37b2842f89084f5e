"""The trainer process dies mid-run (SIGKILL): the run is reported failed once its heartbeat goes
silent, the active model is untouched, and the next run trains and activates normally.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from app.config import Settings
from app.main import create_app
from tests.faults.support import buyers, make_settings, seed_and_train, wait_for

# Well above the trainer's 2 s heartbeat and its start-up (importing numpy, scikit-learn and
# the app has taken 4 s on this shared machine), so that no live run is ever reaped here.
HEARTBEAT_TIMEOUT_SECONDS = 8.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The embedded store or the private PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def _settings(tmp_path: Path, url: str) -> Settings:
    return make_settings(
        tmp_path, url, None, trainer_heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_SECONDS
    )


def _retrain(client: TestClient, timeout: float = 120) -> dict:
    response = client.post("/retrain")
    assert response.status_code == 202, response.text
    url = response.json()["status_url"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(url).json()
        if run["status"] in ("succeeded", "failed"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"{url} did not finish within {timeout}s")


def _wait_for_version(client: TestClient, version: int) -> None:
    wait_for(
        lambda: client.get("/ready").json()["checks"]["model"]["version"] == version,
        15,
        f"model version {version} loaded",
    )


def _trainer_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _running_trainer(engine: Engine, run_id: int) -> int:
    """The pid of the trainer process as soon as it has marked run `run_id` running."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "the trainer never started the run"
        with engine.connect() as conn:
            status, pid = conn.execute(
                text("SELECT status, worker_pid FROM training_run WHERE id = :id"), {"id": run_id}
            ).one()
        assert status in ("queued", "running"), f"run ended ({status}) before the fault"
        if status == "running" and pid:
            assert f"app.training.runner {run_id}" in _trainer_cmdline(pid)  # never a stranger
            return pid
        time.sleep(0.005)


def test_a_killed_trainer_is_reported_failed_and_changes_nothing(
    tmp_path: Path, store_url: str
) -> None:
    settings = _settings(tmp_path, store_url)
    seed_and_train(settings)
    user = buyers()[0]
    engine = create_engine(store_url)
    with TestClient(create_app(settings)) as client:
        _wait_for_version(client, 1)
        before = client.get(f"/recommend/{user}").json()
        assert before["model_version"] == 1 and before["source"] == "personalized"

        requested_at = time.monotonic()
        run_id = client.post("/retrain").json()["run_id"]
        # Kill the trainer the moment it has started working on the run.
        pid = _running_trainer(engine, run_id)
        running_after = time.monotonic() - requested_at
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: _gone(pid), 5, f"trainer {pid} gone", interval=0.01)
        with engine.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM training_run WHERE id = :id"), {"id": run_id}
            ).scalar_one()
        assert status == "running", f"the run was already {status} when its trainer died"

        # Until the heartbeat times out the run still holds the single slot.
        again = client.post("/retrain").json()
        assert again["already_running"] is True and again["run_id"] == run_id
        # Then it is reported failed, with the reason.
        wait_for(
            lambda: client.get(f"/retrain/{run_id}").json()["status"] == "failed",
            HEARTBEAT_TIMEOUT_SECONDS + 10,
            "the killed run reported failed",
            interval=0.2,
        )
        reported_in = time.monotonic() - killed_at
        failed = client.get(f"/retrain/{run_id}").json()
        assert "stopped responding" in failed["error"] and failed["model_version"] is None
        # Nothing changed for the callers.
        models = client.get("/models").json()
        assert [(m["version"], m["is_active"]) for m in models] == [(1, True)]
        assert client.get("/ready").json()["checks"]["model"]["version"] == 1
        assert not (settings.model_dir / "v2").exists()  # no half-written bundle published
        during = client.get(f"/recommend/{user}").json()
        assert during["model_version"] == 1 and during["items"] == before["items"]

        # The next run trains and activates normally.
        started = time.monotonic()
        run = _retrain(client)
        next_run_seconds = time.monotonic() - started
        assert run["status"] == "succeeded", run["error"]
        assert run["id"] != run_id
        assert run["model_version"] == 2
        _wait_for_version(client, 2)
        assert client.get(f"/recommend/{user}").json()["model_version"] == 2
    engine.dispose()
    print(
        f"\n[trainer killed, {store_url.split(':')[0].split('+')[0]}] run {run_id} running "
        f"{running_after:.2f}s after POST /retrain, SIGKILLed at once; reported failed "
        f"{reported_in:.2f}s after the kill (heartbeat timeout "
        f"{HEARTBEAT_TIMEOUT_SECONDS:.0f}s); model v1 served throughout; the next run "
        f"succeeded as v2 in {next_run_seconds:.2f}s"
    )


def test_a_bundle_left_by_a_trainer_that_died_before_registering_does_not_wedge_training(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = _settings(tmp_path, sqlite_url)
    seed_and_train(settings)
    # What a trainer killed between `partial.rename(final)` and registering leaves behind.
    shutil.copytree(settings.model_dir / "v1", settings.model_dir / "v2")
    with TestClient(create_app(settings)) as client:
        _wait_for_version(client, 1)
        run = _retrain(client)
        print(f"\n[orphan bundle v2] next run: {run['status']} {run['error']}")
        assert run["status"] == "succeeded", run["error"]
        assert run["model_version"] == 2
        _wait_for_version(client, 2)


def test_a_trainer_that_wakes_after_being_reported_failed_changes_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = _settings(tmp_path, sqlite_url)
    seed_and_train(settings)
    engine = create_engine(sqlite_url)
    with TestClient(create_app(settings)) as client:
        _wait_for_version(client, 1)
        run_id = client.post("/retrain").json()["run_id"]
        pid = _running_trainer(engine, run_id)
        os.kill(pid, signal.SIGSTOP)  # a host suspended, a process starved: no heartbeat
        try:
            wait_for(
                lambda: client.get(f"/retrain/{run_id}").json()["status"] == "failed",
                HEARTBEAT_TIMEOUT_SECONDS + 10,
                "the stalled run reported failed",
                interval=0.2,
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: _gone(pid), 60, f"trainer {pid} exited", interval=0.1)
        run = client.get(f"/retrain/{run_id}").json()
        models = client.get("/models").json()
        print(
            f"\n[trainer stalled] run {run_id} reported failed, then the trainer woke: run "
            f"{run['status']}, versions {[(m['version'], m['is_active']) for m in models]}"
        )
        # Once callers were told the run failed, nothing it did afterwards may count.
        assert run["status"] == "failed" and run["model_version"] is None
        assert [(m["version"], m["is_active"]) for m in models] == [(1, True)]
    engine.dispose()
