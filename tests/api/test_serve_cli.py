"""`tastemaker serve`: the interface from `--host` or TASTEMAKER_HOST is the one every worker
checks the key rule against; a refusal is one line and a non-zero exit, never a traceback.

The service runs as users start it, in a subprocess (a server that wrongly starts is stopped by
the timeout, and the test fails).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.conftest import override
from tests.faults.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASTEMAKER_")}
    return {**clean, **settings.child_environment(), "OPENBLAS_NUM_THREADS": "1", **extra}


def _serve(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()), *args]
    return subprocess.run(
        command, cwd=REPO, env=_env(settings, **extra), capture_output=True, text=True, timeout=300
    )


# Processes are slow to start: the embedded store is enough for a rule about the interface.
EMBEDDED = pytest.mark.parametrize("settings", ["embedded"], indirect=True)


@EMBEDDED
@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("--host", "0.0.0.0"), {}),
        ((), {"TASTEMAKER_HOST": "0.0.0.0"}),
    ],
    ids=["flag", "variable"],
)
def test_a_public_interface_without_keys_is_refused_in_one_line(settings, args, extra):
    done = _serve(settings, *args, **extra)
    assert done.returncode != 0
    output = (done.stdout + done.stderr).strip()
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert "refusing to serve on 0.0.0.0 without API keys" in lines[0]
    assert "tastemaker keys create" in lines[0] and "TASTEMAKER_ALLOW_ANONYMOUS=true" in lines[0]


@EMBEDDED
def test_every_worker_serves_the_interface_it_was_given(settings, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    env = _env(override(settings, allow_anonymous=True))
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and log.read_text().count("Application startup") < 2:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the workers too
        process.wait(30)
    text = log.read_text()
    assert "Traceback" not in text
    # Each worker says which interface its own settings hold, and that it serves it anonymously.
    assert text.count("serving without API keys on 0.0.0.0") == 2, text
