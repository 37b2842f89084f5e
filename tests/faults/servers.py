"""Private servers for fault tests: Redis, PostgreSQL and the service itself, each on a free port.

Fault tests break these and only these; the machine's shared PostgreSQL (5432) and Redis (6379)
are never touched. A server that cannot be started fails the test under CI=true and skips it
elsewhere, like `require_server` in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]


def unavailable(message: str) -> None:
    """Fail under CI (fault tests must run there), skip elsewhere."""
    if IN_CI:
        pytest.fail(message + " (CI=true: fault tests must run against private servers)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{what} within {timeout}s")


class RedisServer:
    """A throwaway redis-server (no persistence) that can crash, freeze and come back."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on `self.port` (the same port after a crash) and wait until it accepts."""
        if self.binary is None:
            unavailable("redis-server is not installed")
        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            _wait_until(
                lambda: listening(self.port), 10, f"redis-server on {self.port} did not start"
            )
        except TimeoutError as exc:
            self.kill()
            unavailable(str(exc))

    def kill(self) -> None:
        """SIGKILL: a crash, connections reset, nothing saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server must die too
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    return found[-1] if found else shutil.which(name)


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory (initdb refuses root: see `_run`)."""

    def __init__(self) -> None:
        self.initdb = _pg_bin("initdb")
        self.pg_ctl = _pg_bin("pg_ctl")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tm-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        # initdb and postgres refuse to run as root; run them as the `postgres` account then.
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def init(self) -> None:
        """initdb with trust auth for the local superuser `postgres`."""
        if self.initdb is None or self.pg_ctl is None:
            unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        if self.as_root and shutil.which("runuser") is None:
            unavailable("running as root without `runuser` to start PostgreSQL as `postgres`")
        if self.as_root:
            try:
                shutil.chown(self.root, "postgres", "postgres")
            except LookupError:
                unavailable("running as root and there is no `postgres` account to run PostgreSQL")
        self.root.chmod(0o700)
        done = self._run(
            self.initdb,
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        if done.returncode != 0:
            unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")

    def start(self) -> None:
        """Start (after a crash: with recovery) and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=100"
        )
        done = self._run(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )
        if done.returncode != 0:
            unavailable(f"pg_ctl start failed: {done.stderr.strip()[-500:]} {self.log_tail()}")

    def stop(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m immediate`: every backend dies at once, as in a crash."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return self._run(self.pg_ctl, "-D", str(self.data), "status").returncode == 0

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()[-1000:]
        return ""

    def destroy(self) -> None:
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class ServiceProcess:
    """The service as production runs it (`app.server.serve`), in its own process."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"port": self.port, "host": "127.0.0.1"})
        self.log_path = workdir / f"service-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, **self.settings.child_environment(), "OPENBLAS_NUM_THREADS": "1"}
        code = "from app.config import get_settings; from app.server import serve; serve(get_settings())"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited at start-up:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the service did not answer /health in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()
        return ""

    def log_tail(self) -> str:
        return self.log_text()[-3000:]
