"""Run uvicorn workers, each on its own SO_REUSEPORT socket so the kernel spreads connections.

With one worker, uvicorn runs in this process. With several, this process supervises them:

- SIGTERM or SIGINT: every worker gets SIGTERM, stops accepting and lets the requests in flight
  finish for at most `shutdown_seconds`; a worker still alive a few seconds later is killed.
  Then the process exits 0.
- A worker that dies otherwise (a crash, the OOM killer) is started again in its slot, after a
  pause that doubles with each quick death (up to 30 s), so a crash loop does not spin.
- A worker whose supervisor disappears (SIGKILL) shuts down as on SIGTERM: nothing is left
  holding the port.
- Worker 0 alone is given the retrain schedule (see app/training/scheduler.py).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from threadpoolctl import threadpool_limits

from app import logs, metrics
from app.config import Settings
from app.security.keys import AnonymousOnPublicInterface, check_before_serving

# "module:function", or a picklable callable (each worker process builds its app with it).
Factory = str | Callable[[], Any]

# The workers' own log (uvicorn's), so the supervisor's lines read like theirs.
log = logging.getLogger("uvicorn.error")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRACE_SECONDS = 5.0  # after the drain bound, before a worker still alive is killed
PARENT_POLL_SECONDS = 0.5
FIRST_PAUSE_SECONDS = 0.5  # before a dead worker is started again; doubles while it keeps dying
MAX_PAUSE_SECONDS = 30.0
STABLE_SECONDS = 60.0  # a worker that lived this long died once, not in a loop


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


def _exit_quietly(sig: int, frame: FrameType | None) -> None:
    """Exit 0 on a stop signal that uvicorn is not (or no longer) handling.

    uvicorn raises the signal it shut down on once more after its graceful shutdown, so that the
    default action (death by SIGTERM, KeyboardInterrupt) follows; the shutdown is done by then.
    Before uvicorn starts, the signal stops the worker before it serves anything.
    """
    sys.exit(0)


def _watch_parent(parent_pid: int, shutdown_seconds: int) -> None:
    """Shut this worker down, as on SIGTERM, once its supervisor is gone (killed hard)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        log.warning("Supervisor [%d] is gone; worker [%d] stops", parent_pid, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(shutdown_seconds + GRACE_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_worker(
    factory: Factory,
    host: str,
    port: int,
    reuse_port: bool,
    shutdown_seconds: int = 20,
    parent_pid: int | None = None,
) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _exit_quietly)
    if parent_pid is not None:
        _watch_parent(parent_pid, shutdown_seconds)
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
        timeout_graceful_shutdown=shutdown_seconds,
    )
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class _Slot:
    """One worker's place: the factory it builds its app with, its process, its recent deaths."""

    number: int
    factory: Factory
    process: BaseProcess | None = None
    started_at: float = 0.0
    deaths: int = 0  # in a row, each after less than STABLE_SECONDS
    start_at: float | None = None  # when to start it again, once dead


class Supervisor:
    """Keep one worker process per slot alive until SIGTERM or SIGINT, then stop them all."""

    def __init__(
        self,
        factories: list[Factory],
        host: str,
        port: int,
        shutdown_seconds: int,
        metrics_dir: Path | None = None,
    ) -> None:
        self.slots = [_Slot(number, factory) for number, factory in enumerate(factories)]
        self.host = host
        self.port = port
        self.shutdown_seconds = shutdown_seconds
        self.stop_signal: int | None = None
        self.metrics_dir = metrics_dir
        self._context = multiprocessing.get_context("spawn")

    def run(self) -> None:
        """Start every worker, restart those that die, and stop them all on a stop signal."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            log.info("Started supervisor [%d] for %d workers", os.getpid(), len(self.slots))
            for slot in self.slots:
                self._start(slot)
            while self.stop_signal is None:
                self._tend()
            log.info("Supervisor got %s; stopping workers", signal.Signals(self.stop_signal).name)
            self._stop_all()
            log.info("Stopped supervisor [%d]", os.getpid())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = sig

    def _start(self, slot: _Slot) -> None:
        args = (slot.factory, self.host, self.port, True, self.shutdown_seconds, os.getpid())
        slot.process = self._context.Process(target=_run_worker, args=args, daemon=False)
        slot.process.start()
        slot.started_at = time.monotonic()
        slot.start_at = None
        log.info("Started worker %d [%d]", slot.number, slot.process.pid)

    def _tend(self) -> None:
        """Wait a little for a worker to die; schedule its restart; start those that are due."""
        alive = [s.process.sentinel for s in self.slots if s.process is not None]
        due = [s.start_at for s in self.slots if s.start_at is not None]
        timeout = min([PARENT_POLL_SECONDS, *(max(0.0, at - time.monotonic()) for at in due)])
        multiprocessing.connection.wait(alive, timeout)
        if self.stop_signal is not None:  # a Ctrl-C reaches the workers too: not a death
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is not None and slot.process.exitcode is not None:
                self._buried(slot, now)
            if slot.start_at is not None and slot.start_at <= now:
                self._start(slot)

    def _buried(self, slot: _Slot, now: float) -> None:
        """Note a worker's death and when to start its slot again."""
        assert slot.process is not None
        lived = now - slot.started_at
        slot.deaths = slot.deaths + 1 if lived < STABLE_SECONDS else 1
        pause = min(MAX_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2 ** (slot.deaths - 1))
        log.warning(
            "Worker %d [%d] died (exit code %s) after %.1f s; starting it again in %.1f s",
            slot.number,
            slot.process.pid,
            slot.process.exitcode,
            lived,
            pause,
        )
        metrics.worker_exited(self.metrics_dir, slot.process.pid)
        slot.process.close()
        slot.process = None
        slot.start_at = now + pause

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait for the drain bound, then kill those still alive."""
        processes = [s.process for s in self.slots if s.process is not None]
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + self.shutdown_seconds + GRACE_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.exitcode is None:
                log.warning("Worker [%d] still runs after the drain; killing it", process.pid)
                process.kill()
                process.join()
            metrics.worker_exited(self.metrics_dir, process.pid)


def run_workers(
    factory: Factory,
    host: str,
    port: int,
    workers: int,
    *,
    shutdown_seconds: int = 20,
    first: Factory | None = None,
    metrics_dir: Path | None = None,
) -> None:
    """Serve the app that `factory` builds (worker 0's with `first`, if given) until a stop signal.

    With `workers` > 1 this process supervises them (see the module's docstring).
    """
    if workers == 1:
        _run_worker(first or factory, host, port, False, shutdown_seconds)
        return
    # One listening socket per worker: a shared socket lets one worker take every
    # keep-alive connection (measured on this machine).
    factories = [first or factory, *[factory] * (workers - 1)]
    Supervisor(factories, host, port, shutdown_seconds, metrics_dir).run()


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

    if settings.retrain_schedule_here and (
        settings.retrain_every_minutes or settings.retrain_after_events
    ):
        log.info("Worker [%d] runs the retrain schedule", os.getpid())
    return create_app(settings)


def serve(settings: Settings) -> None:
    """Serve Tastemaker with `settings.workers` processes (one SO_REUSEPORT socket each).

    Every worker gets these settings, not its own reading of the environment, so the interface
    bound is the one the key rule is checked against; only worker 0 keeps the retrain schedule.
    Refuses (AnonymousOnPublicInterface) before binding anything.
    """
    check_before_serving(settings)
    logs.configure(settings.log_format, settings.log_level)
    # Every worker writes its metrics where any of them reads them all for a scrape.
    directory = metrics.prepare_multiprocess() if settings.workers > 1 else None
    first = settings.model_copy(update={"metrics_multiprocess_dir": directory})
    others = first.model_copy(update={"retrain_schedule_here": False})
    try:
        run_workers(
            functools.partial(worker_app, others),
            settings.host,
            settings.port,
            settings.workers,
            shutdown_seconds=settings.shutdown_seconds,
            first=functools.partial(worker_app, first),
            metrics_dir=directory,
        )
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
