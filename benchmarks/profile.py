"""Profile a worker of the running service under wrk load with py-spy; summarise the stacks.

    python -m benchmarks profile recommend_cached [--workers 1] [--seconds 10] [--backend postgres]

py-spy samples the worker (``--native`` off, GIL and idle frames dropped) while wrk drives
the endpoint; the collapsed stacks are written next to the results and summarised as the
functions with the most samples on-CPU: *self* (the frame running) and *inclusive* (the
frame anywhere on the stack).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import report, store
from benchmarks.serving import (
    PRIMED,
    Ids,
    Server,
    prime,
    read_ids,
    service_env,
    start_service,
    workloads,
)
from benchmarks.wrk import run_wrk


def ensure_py_spy() -> str:
    """Path of py-spy; pip-install it into this environment when missing (measurement only)."""
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if Path(found).exists():
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False)
    if Path(found).exists():
        return found
    raise SystemExit("py-spy is not installed and pip could not install it: `pip install py-spy`")


HOT_USERS = 1000
# Leaf frames that are waiting, not computing (py-spy's idle filter misses these).
IDLE_LEAVES = ("Condition.wait", "Connection.wait", "EpollSelector.select", "_PollLikeSelector")


def summarise(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive on-CPU sample shares per function from py-spy's raw output."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue
        total += count
        self_counts[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "share": round(n / total, 3)} for name, n in counter.most_common(top)
        ]

    return {"samples": total, "self": share(self_counts), "inclusive": share(inclusive)}


def _short(frame: str) -> str:
    """`func (path/to/file.py:123)` → `func (file.py)`, keeping app/ paths readable."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "/app/" in path:
        path = "app/" + path.split("/app/", 1)[1]
    elif "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    return f"{name} ({path})"


def profile_endpoint(
    server: Server, ids: Ids, endpoint: str, seconds: float, out: Path, connections: int = 64
) -> dict[str, Any]:
    """Record one worker with py-spy while wrk drives `endpoint`."""
    py_spy = ensure_py_spy()
    loads = workloads(ids, HOT_USERS)
    workload = loads[endpoint]
    if endpoint in PRIMED:
        prime(server, workload.paths)
    elif endpoint == "recommend_uncached":  # as in the benchmark: histories already cached
        prime(server, loads["recommend_cached"].paths)
    if endpoint != "events":  # abandoned batches would still be written while sampling
        run_wrk(server.url, workload, connections=connections, duration_s=2, run_tag="pw")
    pid = server.worker_pids()[0]
    load = threading.Thread(
        target=run_wrk,
        args=(server.url, workload),
        kwargs={
            "connections": connections,
            "duration_s": seconds + 2,
            "run_tag": "pp",
            "timeout_s": 60,
        },
    )
    load.start()
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
               "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    subprocess.run(command, capture_output=True, check=False)
    load.join()
    if not out.exists():
        raise RuntimeError("py-spy wrote no profile (is ptrace allowed here?)")
    return {"endpoint": endpoint, "pid": pid, "file": str(out), **summarise(out)}


def run_profile(
    endpoint: str, workers: int, seconds: float, backend: str, work: Path, connections: int = 64
) -> dict:
    """Stage the prepared store, start the service, profile one endpoint; return the summary."""
    prepared = store.prepare(lambda m: print(m, file=sys.stderr))
    if backend == "postgres":
        url = store.stage_postgres(prepared, work / "models")
        env = service_env(
            database_url=url, redis_prefix="tmbench:profile:", model_dir=work / "models",
            data_dir=work / "data",
        )  # fmt: skip
    else:
        file = store.stage_sqlite(prepared, work / "data", work / "models")
        url = f"sqlite:///{file}"
        env = service_env(
            database_url=None, redis_prefix=None, model_dir=work / "models", data_dir=work / "data"
        )
    ids = read_ids(url)
    server = start_service(env, workers, work / "server.log")
    try:
        out = report.RESULTS_DIR / f"profile-{backend}-{endpoint}-w{workers}.txt"
        return profile_endpoint(server, ids, endpoint, seconds, out, connections)
    finally:
        server.stop()
        if backend == "postgres":
            from benchmarks.serving import clear_redis_prefix

            clear_redis_prefix("tmbench:profile:")
            store.drop_bench_database()
