"""`tastemaker serve` as an operator runs it: signals, dead workers, and the retrain schedule.

SIGTERM drains a request in flight, stops every worker and exits 0, leaving no process and a free
port; a worker killed with SIGKILL is replaced; a killed supervisor takes its workers with it; the
retrain schedule runs in one worker. Each server is a real subprocess on the embedded store.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.server import GRACE_SECONDS
from tests.conftest import override
from tests.faults.servers import free_port

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 120.0  # a loaded 2-core machine starts two workers slowly
SCHEDULE_LINE = re.compile(r"Worker \[(\d+)\] runs the retrain schedule")


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout:.0f}s")


@dataclass
class Served:
    """A `tastemaker serve` subprocess, its port and its log."""

    process: subprocess.Popen
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> list[psutil.Process]:
        """The worker processes (multiprocessing's resource tracker is not one)."""
        children = psutil.Process(self.process.pid).children()
        return [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]

    def tree(self) -> list[psutil.Process]:
        parent = psutil.Process(self.process.pid)
        return [parent, *parent.children(recursive=True)]

    def answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


def _settings(workdir: Path, sqlite_template: Path) -> Settings:
    db = workdir / "tastemaker.db"
    shutil.copy(sqlite_template, db)
    return Settings(
        database_url=f"sqlite:///{db}",
        data_dir=workdir / "data",
        model_dir=workdir / "models",
        # The schedule runs (and logs that it does) but never finds a retrain due.
        retrain_after_events=1_000_000,
        shutdown_seconds=30,
    )


def _start(settings: Settings, workdir: Path, workers: int) -> Served:
    port = free_port()
    log = workdir / f"serve-{port}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASTEMAKER_")}
    env = {**clean, **settings.child_environment(), "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True
        )
    served = Served(process, port, log)
    try:
        _wait(
            lambda: (
                process.poll() is not None
                or served.text().count("Application startup complete") >= workers
            ),
            START_SECONDS,
            "the workers did not start",
        )
        assert process.poll() is None, served.text()
        _wait(served.answers, 30, "the service did not answer")
    except BaseException:
        _kill_group(served)
        raise
    return served


def _kill_group(served: Served) -> None:
    """Whatever is left of a server's session (a test that failed midway)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(served.process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        served.process.wait(10)


def _gone(processes: list[psutil.Process], timeout: float = 30) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert alive == [], [(p.pid, p.cmdline()) for p in alive]


def _port_is_free(port: int) -> None:
    """A new server can listen on `port`: no socket listens there any more."""
    with socket.socket() as sock:
        # As every server binds (app.server._bind): closed connections in TIME_WAIT do not
        # count, a socket still listening raises EADDRINUSE.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def _read_until(conn: socket.socket, enough: Callable[[bytes], bool]) -> bytes:
    """What the server sends on `conn`, until `enough` of it or until the server closes it."""
    got = b""
    while not enough(got):
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _scheduler_pids(text: str) -> list[int]:
    return [int(pid) for pid in SCHEDULE_LINE.findall(text)]


def _worker_pid(text: str, number: int) -> int:
    return int(re.findall(rf"Started worker {number} \[(\d+)\]", text)[-1])


@pytest.fixture(scope="module")
def served(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One two-worker server shared by the tests below, in order; the last one stops it."""
    workdir = tmp_path_factory.mktemp("lifecycle")
    server = _start(_settings(workdir, sqlite_template), workdir, workers=2)
    try:
        yield server
    finally:
        _kill_group(server)


def test_the_schedule_runs_in_worker_0_only(served):
    assert len(served.workers()) == 2
    assert _scheduler_pids(served.text()) == [_worker_pid(served.text(), 0)], served.text()


def test_a_scrape_of_any_worker_counts_every_worker(served):
    base = f"http://127.0.0.1:{served.port}"

    def health_requests() -> float:
        text = httpx.get(base + "/metrics", timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "tastemaker_http_requests_total"
            and sample.labels.get("route") == "/health"
        )

    time.sleep(1.2)  # every worker hands its counts over once a second (app/metrics.py)
    before = health_requests()
    for _ in range(40):  # new connections, spread over both workers' sockets
        assert served.answers()
    time.sleep(1.2)
    # Whichever worker answers the scrape, it reports the requests of both.
    assert {health_requests() - before for _ in range(8)} == {40}


def test_a_killed_worker_is_started_again_with_the_schedule(served):
    killed = _worker_pid(served.text(), 0)
    os.kill(killed, signal.SIGKILL)
    _wait(
        lambda: (
            _worker_pid(served.text(), 0) != killed
            and served.text().count("Application startup complete") >= 3
        ),
        START_SECONDS,
        "worker 0 was not started again",
    )
    text = served.text()
    assert re.search(rf"Worker 0 \[{killed}\] died \(exit code -9\)", text), text
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == "zombie"
    pids = {p.pid for p in served.workers()}
    assert len(pids) == 2 and killed not in pids
    # The schedule moved with the slot: still exactly one process runs it.
    assert _scheduler_pids(text) == [killed, _worker_pid(text, 0)], text
    for _ in range(20):  # new connections, spread over both workers' sockets
        assert served.answers()


def test_sigterm_finishes_the_request_in_flight_and_leaves_nothing(served):
    tree = served.tree()
    body = json.dumps({"events": [{"user_id": "u1", "item_id": "i1", "type": "view"}]}).encode()
    continue_line = b"HTTP/1.1 100 Continue\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as conn:
        conn.sendall(
            b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        # The app asked for the body: the request is in flight when the signal comes.
        assert _read_until(conn, lambda got: continue_line in got) == continue_line
        served.process.send_signal(signal.SIGTERM)
        _wait(
            lambda: served.text().count("Shutting down") >= 2,
            60,
            "the workers did not begin to shut down",
        )
        conn.sendall(body)
        answer = _read_until(conn, lambda got: False)  # the worker closes after answering
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["accepted"] == 1
    assert served.process.wait(60) == 0, served.text()
    _gone(tree)
    _port_is_free(served.port)
    text = served.text()
    assert "Traceback" not in text and "killing it" not in text, text
    assert text.count("died") == 1  # the worker killed above; stopping is no death
    assert text.count("Finished server process") == 2  # the killed worker never finished


def test_a_killed_supervisor_takes_its_workers_with_it(sqlite_template, tmp_path):
    server = _start(_settings(tmp_path, sqlite_template), tmp_path, workers=2)
    try:
        workers = server.workers()
        assert len(workers) == 2
        server.process.kill()
        assert server.process.wait(30) == -signal.SIGKILL
        _gone(workers)
        _port_is_free(server.port)
    finally:
        _kill_group(server)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_every_process_and_exits_0(sqlite_template, tmp_path, workers):
    server = _start(_settings(tmp_path, sqlite_template), tmp_path, workers=workers)
    try:
        tree = server.tree()
        if workers == 1:  # uvicorn runs in `tastemaker serve`, and so does the schedule
            assert _scheduler_pids(server.text()) == [server.process.pid]
        os.killpg(server.process.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
        assert server.process.wait(60) == 0, server.text()
        _gone(tree)
        _port_is_free(server.port)
        text = server.text()
        assert "Traceback" not in text and "died" not in text, text
    finally:
        _kill_group(server)


def test_stopping_the_service_stops_its_trainer_and_fails_the_run(sqlite_template, tmp_path):
    from datetime import UTC, datetime, timedelta

    from app.datasets.synthetic import generate_shop
    from app.db import make_engine, make_sessionmaker
    from app.demo import import_shop
    from app.security.keys import hash_key

    settings = _settings(tmp_path, sqlite_template)
    admin = "tm_admin_lifecycle_1"
    settings = override(
        settings, api_keys=[{"name": "ops", "sha256": hash_key(admin), "scopes": ["admin"]}]
    )
    engine = make_engine(settings.resolved_database_url)
    end = datetime.now(UTC) - timedelta(days=1)
    shop = generate_shop(
        n_users=2000, n_items=800, n_events=60_000, seed=3, start=end - timedelta(days=200)
    )
    import_shop(make_sessionmaker(engine), shop, settings=settings)
    engine.dispose()
    server = _start(settings, tmp_path, workers=1)
    try:
        base, auth = f"http://127.0.0.1:{server.port}", {"Authorization": f"Bearer {admin}"}
        run = httpx.post(f"{base}/retrain", headers=auth, timeout=30).json()

        def status() -> str:
            return httpx.get(f"{base}/retrain/{run['run_id']}", headers=auth, timeout=30).json()[
                "status"
            ]

        _wait(lambda: status() == "running", 60, "the trainer did not start")
        trainers = [p for p in server.tree() if "app.training.runner" in " ".join(p.cmdline())]
        assert len(trainers) == 1
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, server.text()
        _gone(trainers, timeout=10)
    finally:
        _kill_group(server)
    with sqlite3.connect(tmp_path / "tastemaker.db") as db:
        state, error = db.execute(
            "SELECT status, error FROM training_run WHERE id = ?", (run["run_id"],)
        ).fetchone()
    assert (state, error) == ("failed", "ServiceStopped: the service stopped during training")
    assert "stopping the trainer" in server.text()


def test_docker_stop_reaches_the_service_and_waits_for_the_drain():
    dockerfile = (REPO / "Dockerfile").read_text()
    command = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    # Exec form, and the shell replaced by the service: `tastemaker serve` gets docker's SIGTERM.
    assert command.startswith("CMD [") and "exec tastemaker serve" in command
    assert "STOPSIGNAL SIGTERM" in dockerfile
    api = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["api"]
    assert api["init"] is True
    shutdown = int(api["environment"]["TASTEMAKER_SHUTDOWN_SECONDS"])
    assert int(api["stop_grace_period"].removesuffix("s")) >= shutdown + GRACE_SECONDS


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
@pytest.mark.parametrize("here", [True, False])
def test_an_app_runs_the_schedule_only_where_its_settings_say(settings, here, monkeypatch):
    from fastapi.testclient import TestClient

    from app import main

    started = []

    async def schedule(factory, settings):
        started.append(settings)

    monkeypatch.setattr(main, "run_schedule", schedule)
    settings = override(settings, retrain_after_events=10, retrain_schedule_here=here)
    with TestClient(main.create_app(settings)) as client:
        assert client.get("/health").status_code == 200
    assert len(started) == int(here)


class _DeadProcess:
    pid = 4242
    exitcode = -9

    def close(self) -> None:
        pass


def test_a_worker_that_keeps_dying_is_started_again_ever_more_slowly():
    from app.server import MAX_PAUSE_SECONDS, STABLE_SECONDS, Supervisor

    supervisor = Supervisor(["app.main:create_app"], "127.0.0.1", 1, 1)
    slot = supervisor.slots[0]
    pauses = []
    for lived in [1.0] * 8 + [STABLE_SECONDS + 1, 1.0]:
        slot.process, slot.started_at = _DeadProcess(), 1000.0  # type: ignore[assignment]
        supervisor._buried(slot, now=1000.0 + lived)
        assert slot.process is None and slot.start_at is not None
        pauses.append(slot.start_at - (1000.0 + lived))
    assert pauses[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, MAX_PAUSE_SECONDS]
    assert pauses[7] == MAX_PAUSE_SECONDS
    # A worker that lived a while died once: the next pause starts over, and so does the count.
    assert pauses[8:] == [0.5, 1.0]


def test_a_part_that_will_not_stop_does_not_keep_the_worker_from_stopping(
    settings, monkeypatch, caplog
):
    """The lifespan gives each part PART_STOP_SECONDS, logs the one that hangs and goes on."""
    import asyncio
    import logging

    from fastapi.testclient import TestClient

    from app import main

    monkeypatch.setattr(main, "PART_STOP_SECONDS", 0.5)
    stopped = []

    async def hangs() -> None:
        await asyncio.Event().wait()  # nothing ever sets it

    with caplog.at_level(logging.ERROR, logger="app.main"):
        client = TestClient(main.create_app(settings))
        with client:
            registry_stop = client.app.state.registry.stop

            async def registry_stops() -> None:
                await registry_stop()
                stopped.append("registry")

            client.app.state.dispatcher.stop = hangs
            client.app.state.registry.stop = registry_stops
            started = time.monotonic()
        took = time.monotonic() - started
    assert took < 5, took
    assert stopped == ["registry"]  # the parts after the hung one still stopped
    assert any("webhook dispatcher did not stop" in r.getMessage() for r in caplog.records)
