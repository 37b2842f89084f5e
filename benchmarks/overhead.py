"""What each per-request layer costs on a cached ``GET /recommend``, measured in one process.

The serving benchmark's HTTP figures share two cores between the server and wrk, and its
rounds differ by more than the few per cent one layer costs. Here the app that ``tastemaker
serve`` runs (``create_app`` on the benchmark's store and bundle, prometheus-client in
multiprocess mode as under ``serve``, access lines written to a file) takes the same cached
requests straight through its ASGI interface, in variants that differ by one setting:

- ``default``: everything on, as shipped;
- ``metrics off``: ``TASTEMAKER_METRICS=false`` (nothing counted per request);
- ``access log off``: ``TASTEMAKER_ACCESS_LOG=false``;
- ``fast lane off``: ``TASTEMAKER_FAST_LANE=false`` (FastAPI's routing for every route).

The variants take turns request by request (so that whatever else runs on the machine weighs
on each alike); the CPU time of the whole process per request (threads included: work moved
to a thread still counts) is summed per variant over a round, and the median of the rounds
kept. Uvicorn's HTTP parsing and socket work are left out, the same for every variant, so differences are the layers' costs;
shares are of the in-process CPU per request of ``default``, a smaller denominator than the
whole server's CPU per request over HTTP (so the shares are upper bounds).

    python -m benchmarks.overhead PATHS_FILE   # started by ``python -m benchmarks run``
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app import metrics

VARIANTS: dict[str, dict[str, bool]] = {
    "default": {},
    "metrics off": {"metrics": False},
    "access log off": {"access_log": False},
    "fast lane off": {"fast_lane": False},
}
BLOCK = 1000  # requests per variant and round
ROUNDS = 7


def _scope(path: str) -> dict[str, Any]:
    path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _get(app: Any, path: str) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(path), receive, send)
    return status


async def _round(apps: list[tuple[Any, bool]], paths: list[str], start: int) -> list[float]:
    """CPU µs of the process per request of each app, over one round of requests.

    The apps take turns request by request, so whatever else the machine does at a moment
    weighs on every variant alike.
    """
    spent = [0.0] * len(apps)
    clock = time.process_time
    for k in range(BLOCK):
        path = paths[(start + k) % len(paths)]
        for slot in range(len(apps)):
            turn = (slot + k) % len(apps)
            app, counting = apps[turn]
            metrics.configure(counting)
            began = clock()
            status = await _get(app, path)
            spent[turn] += clock() - began
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
    return [value / BLOCK * 1e6 for value in spent]


async def measure(paths: list[str]) -> dict[str, Any]:
    """Per variant, the median CPU µs per cached request; the cost of each layer."""
    from app.config import Settings
    from app.main import create_app

    base = Settings()
    apps = []
    async with contextlib.AsyncExitStack() as stack:
        for changes in VARIANTS.values():
            settings = Settings.model_validate({**base.model_dump(), **changes})
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            apps.append((app, settings.metrics))
        for app, counting in apps:
            metrics.configure(counting)
            for path in paths:  # every answer computed and cached once
                await _get(app, path)
        await _round(apps, paths, 0)  # warm
        rounds = [await _round(apps, paths, r * BLOCK) for r in range(ROUNDS)]
        metrics.configure(True)
    samples = dict(zip(VARIANTS, zip(*rounds, strict=True), strict=True))
    median = {name: statistics.median(values) for name, values in samples.items()}
    default = median["default"]

    def cost(variant: str) -> dict[str, float]:
        us = default - median[variant]
        return {"us": round(us, 1), "share": round(us / default, 4)}

    return {
        "requests_per_round": BLOCK,
        "rounds": ROUNDS,
        "us_per_request": {name: round(v, 1) for name, v in median.items()},
        "spread": {
            name: round((max(v) - min(v)) / statistics.median(v), 3) for name, v in samples.items()
        },
        "metrics": cost("metrics off"),
        "access_log": cost("access log off"),
        # Negative: what answering these routes through FastAPI's routing would add.
        "fast_lane": cost("fast lane off"),
    }


def run(env: dict[str, str], paths: list[str], log: Path) -> dict[str, Any]:
    """Measure in a subprocess with the service's environment (see the module's text)."""
    with tempfile.TemporaryDirectory(prefix="tm-overhead-") as work:
        paths_file = Path(work) / "paths.json"
        paths_file.write_text(json.dumps(paths))
        child_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(Path(work) / "metrics")}
        os.makedirs(child_env["PROMETHEUS_MULTIPROC_DIR"])
        with log.open("w") as err:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.overhead", str(paths_file)],
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=err,
                check=True,
                timeout=900,
            )
    return json.loads(done.stdout)


if __name__ == "__main__":
    result = asyncio.run(measure(json.loads(Path(sys.argv[1]).read_text())))
    sys.stdout.write(json.dumps(result) + "\n")
