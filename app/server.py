"""Run uvicorn workers, each on its own SO_REUSEPORT socket so the kernel spreads connections."""

from __future__ import annotations

import functools
import multiprocessing
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from threadpoolctl import threadpool_limits

from app.config import Settings
from app.security.keys import AnonymousOnPublicInterface, check_before_serving

# "module:function", or a picklable callable (each worker process builds its app with it).
Factory = str | Callable[[], Any]


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run_worker(factory: Factory, host: str, port: int, reuse_port: bool) -> None:
    # Short numpy scoring runs on the event loop; multi-threaded BLAS only adds latency there.
    threadpool_limits(1)
    sock = _bind(host, port, reuse_port)
    config = uvicorn.Config(
        factory,
        factory=True,
        log_level="info",
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(factory: Factory, host: str, port: int, workers: int) -> None:
    """Serve the app that `factory` builds with `workers` processes."""
    if workers == 1:
        _run_worker(factory, host, port, reuse_port=False)
        return
    # One listening socket per worker: a shared socket lets one worker take every
    # keep-alive connection (measured on this machine).
    ctx = multiprocessing.get_context("spawn")
    processes = [
        ctx.Process(target=_run_worker, args=(factory, host, port, True), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()


def worker_app(settings: Settings) -> Any:
    """A worker's app on exactly the settings `serve` resolved (the bound interface included).

    It checks the key rule again before the app starts: a refusal is one line on stderr and exit
    status 1, not the traceback a failing lifespan would log.
    """
    try:
        check_before_serving(settings)
    except AnonymousOnPublicInterface as exc:
        sys.exit(f"tastemaker: {exc}")
    from app.main import create_app

    return create_app(settings)


def serve(settings: Settings) -> None:
    """Serve Tastemaker with `settings.workers` processes (one SO_REUSEPORT socket each).

    Every worker gets these settings, not its own reading of the environment, so the interface
    bound is the one the key rule is checked against. Refuses (AnonymousOnPublicInterface)
    before binding anything.
    """
    check_before_serving(settings)
    factory = functools.partial(worker_app, settings)
    run_workers(factory, settings.host, settings.port, settings.workers)
