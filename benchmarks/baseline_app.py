"""The stack's ceiling: a bare FastAPI route answering pre-serialised bytes.

It is served exactly like the service (see ``app/server.py``): uvicorn with uvloop and
httptools, no access log, one ``SO_REUSEPORT`` socket per worker process started with the
``spawn`` context, BLAS limited to one thread. The payload has the size of a real
``/recommend`` answer (``TASTEMAKER_BENCH_PAYLOAD_BYTES``).

    python -m benchmarks.baseline_app --port 8100 --workers 2 --payload-bytes 1100

(``python -m benchmarks baseline-server`` takes the same options.)
"""

from __future__ import annotations

import os
from typing import Annotated

import orjson
import typer
from fastapi import FastAPI, Response

from app.server import run_workers

PAYLOAD_ENV = "TASTEMAKER_BENCH_PAYLOAD_BYTES"


def make_payload(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (at least 16)."""
    shell = orjson.dumps({"items": ""})
    return orjson.dumps({"items": "x" * max(size - len(shell), 0)})


def create_app() -> FastAPI:
    """The baseline app: GET /recommend/{user_id} answers the same pre-built bytes."""
    payload = make_payload(int(os.environ.get(PAYLOAD_ENV, "1024")))
    app = FastAPI(title="baseline")

    @app.get("/recommend/{user_id}", response_class=Response)
    async def recommend(user_id: str) -> Response:
        """Pre-serialised bytes of a /recommend answer's size."""
        return Response(payload, media_type="application/json")

    @app.get("/ready")
    async def ready() -> Response:
        """Always ready."""
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


def serve(host: str, port: int, workers: int, payload_bytes: int) -> None:
    """Serve the baseline exactly as the service is served (app.server.run_workers)."""
    os.environ[PAYLOAD_ENV] = str(payload_bytes)  # read by spawned workers too
    run_workers("benchmarks.baseline_app:create_app", host, port, workers)


def serve_baseline(
    port: Annotated[int, typer.Option(help="port to listen on")],
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    payload_bytes: Annotated[int, typer.Option(help="size of each answer")] = 1024,
) -> None:
    """Serve the bare FastAPI baseline (start_baseline's subprocess)."""
    serve(host, port, workers, payload_bytes)


if __name__ == "__main__":
    typer.run(serve_baseline)
