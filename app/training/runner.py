"""The trainer process: `python -m app.training.runner RUN_ID` trains one queued run.

It runs outside every serving worker (own interpreter, own GIL), beats a heartbeat into the
run row so that a killed trainer is noticed, and records success or the error. The worker that
started it stops it when the worker itself stops (SIGTERM: the run is recorded as failed).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app import logs
from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker, utcnow
from app.training import repository
from app.training.models import TrainingRun
from app.training.pipeline import BuiltBundle, build_bundle, register
from app.training.registry import write_active_pointer

log = logging.getLogger("tastemaker.trainer")
HEARTBEAT_SECONDS = 2.0
#: The trainers this process started and may still have to stop (see :func:`stop_trainers`).
_started: set[subprocess.Popen] = set()


class ServiceStopped(SystemExit):
    """The service that started this trainer stopped (SIGTERM): the run ends as failed."""


def _heartbeat(factory: sessionmaker[Session], run_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            with factory.begin() as session:
                repository.touch_run(session, run_id, utcnow())
        except Exception:  # a missed beat is not fatal; the next one may land
            log.warning("heartbeat of run %s failed", run_id, exc_info=True)


class RunTakenAway(RuntimeError):
    """This trainer's run was declared failed (silent too long) or finished by someone else."""


def _still_ours(run: TrainingRun | None) -> bool:
    return (
        run is not None
        and run.status == "running"
        and run.active_slot == 1
        and run.worker_pid == os.getpid()
    )


def execute_run(
    settings: Settings,
    factory: sessionmaker[Session],
    run_id: int,
    progress: Callable | None = None,
) -> dict[str, Any]:
    """Train run `run_id` to completion, recording its outcome in the store."""
    _start_run(factory, run_id)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(factory, run_id, stop), daemon=True)
    beat.start()
    built: BuiltBundle | None = None
    try:
        built = build_bundle(settings, factory, progress)
        activated, note = _register_run(settings, factory, run_id, built)
    except BaseException as exc:
        stop.set()
        _fail_run(factory, run_id, exc, built)
        raise
    stop.set()
    if activated:
        write_active_pointer(settings.model_dir, built.version)
    skipped = built.metrics["segmentation"].get("skipped")
    if progress:
        progress(
            f"version {built.version}: " + ("activated" if activated else f"kept inactive ({note})")
        )
    return {
        "run_id": run_id,
        "version": built.version,
        "status": "activated" if activated else f"kept inactive: {note}",
        "segmentation": f"skipped: {skipped}" if skipped else "fitted",
        "timings": built.timings,
    }


def _start_run(factory: sessionmaker[Session], run_id: int) -> None:
    """Mark queued run `run_id` as running in this process; refuse a run that is not queued."""
    with factory.begin() as session:
        run = repository.get_run(session, run_id)
        if run is None or run.status != "queued":
            raise ValueError(f"run {run_id} is not queued")
        run.status = "running"
        run.started_at = run.heartbeat_at = utcnow()
        run.worker_pid = os.getpid()


def _register_run(
    settings: Settings, factory: sessionmaker[Session], run_id: int, built: BuiltBundle
) -> tuple[bool, str | None]:
    """Register the built version and mark the run succeeded; whether it was activated, and why not."""
    with factory.begin() as session:
        run = repository.get_run(session, run_id, for_update=True)
        # A trainer that was stalled past the heartbeat timeout has lost its run: it must
        # not activate anything, and another run may already be going.
        if run is None or not _still_ours(run):
            raise RunTakenAway(f"run {run_id} was taken away from this trainer")
        activated, note = register(session, settings, built)
        repository.finish_run(
            session,
            run,
            "succeeded",
            metrics=built.metrics,
            timings=built.timings,
            model_version=built.version,
            error=note,
        )
    return activated, note


def _fail_run(
    factory: sessionmaker[Session], run_id: int, exc: BaseException, built: BuiltBundle | None
) -> None:
    """Mark the run failed if it is still ours (dropping a bundle built for a run taken away)."""
    if isinstance(exc, RunTakenAway) and built is not None:
        shutil.rmtree(built.path, ignore_errors=True)
    with factory.begin() as session:
        run = repository.get_run(session, run_id, for_update=True)
        if run is not None and _still_ours(run):
            repository.finish_run(
                session, run, "failed", error=f"{type(exc).__name__}: {exc}"[:4000]
            )
    if isinstance(exc, ServiceStopped):
        log.warning("run %s failed: %s", run_id, exc)
    else:
        log.error("run %s failed:\n%s", run_id, traceback.format_exc())


def spawn(settings: Settings, run_id: int) -> subprocess.Popen:
    """Start the trainer for `run_id` in its own process (never in a serving worker).

    Its own session keeps a terminal's Ctrl-C away from it; :func:`stop_trainers` stops it.
    """
    env = {**os.environ, **settings.child_environment(), "OPENBLAS_NUM_THREADS": "2"}
    child = subprocess.Popen(
        [sys.executable, "-m", "app.training.runner", str(run_id)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    _started.add(child)
    return child


def stop_trainers(timeout: float) -> None:
    """Stop the trainers this process started that still run (the worker is stopping).

    Each gets SIGTERM and records its run as failed; one still alive after `timeout` seconds
    is killed (the heartbeat rule then marks its run failed).
    """
    running = [child for child in _started if child.poll() is None]
    _started.clear()
    for child in running:
        log.warning("stopping the trainer (pid %s): the service is stopping", child.pid)
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in running:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _stopped(signum: int, frame: object) -> None:
    raise ServiceStopped("the service stopped during training")


def train_now(settings: Settings, progress: Callable | None = None) -> dict[str, Any]:
    """Queue a run and train it in this process (the CLI's `tastemaker train`)."""
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    try:
        with factory.begin() as session:
            run = repository.create_run(session)
            if run is None:
                active = repository.active_run(session)
                raise RuntimeError(f"run {active.id if active else '?'} is already in progress")
            run_id = run.id
        return execute_run(settings, factory, run_id, progress)
    finally:
        engine.dispose()  # callers (tests, the demo) go on living: close the connections now


def main(argv: list[str]) -> int:
    """Process entry point."""
    run_id = int(argv[1])
    signal.signal(signal.SIGTERM, _stopped)
    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    try:
        execute_run(
            settings, factory, run_id, lambda message: log.info("run %s: %s", run_id, message)
        )
    except Exception:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
