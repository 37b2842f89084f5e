"""Process helpers (psutil): CPU time of a process tree, memory maps, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process(pid: int) -> psutil.Process | None:
    """The process `pid`, or None when it is gone."""
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def parent_of(pid: int) -> int | None:
    """The parent process id (None when the process is gone)."""
    process = _process(pid)
    if process is None:
        return None
    try:
        return process.ppid()
    except psutil.NoSuchProcess:
        return None


def descendants(root: int) -> list[int]:
    """`root` and every process below it (only `root` when it has none; [] when it is gone)."""
    process = _process(root)
    if process is None:
        return []
    try:
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return [root]
    return [root, *(child.pid for child in children)]


def _own_cpu_seconds(pid: int, *, reaped: bool) -> float | None:
    """User + system CPU seconds of `pid` (plus its reaped children's when `reaped`);
    None when the process is gone."""
    process = _process(pid)
    if process is None:
        return None
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return None
    own = times.user + times.system
    return own + times.children_user + times.children_system if reaped else own


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of these processes and of their children already reaped."""
    return sum(filter(None, (_own_cpu_seconds(pid, reaped=True) for pid in pids)), 0.0)


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds of every process under `roots`, short-lived ones (reaped) included."""
    return cpu_seconds(pid for root in roots for pid in descendants(root))


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores): everything but idle and iowait."""
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system
    return busy + sum(getattr(times, name, 0.0) for name in ("irq", "softirq", "steal"))


def load_average() -> float:
    """One-minute load average."""
    return os.getloadavg()[0]


def cmdline(pid: int) -> str:
    """The command line of a process, arguments joined by spaces ('' when gone)."""
    process = _process(pid)
    if process is None:
        return ""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def store_process_cpu(roots: list[int], marker: str) -> dict[int, float]:
    """CPU seconds of our store processes: `roots[1:]` whole, and under `roots[0]` (the
    PostgreSQL postmaster; 0 when it was not found) only backends whose title contains
    `marker`, our database's name, so backends of other databases are not counted."""
    postmaster, others = roots[0], roots[1:]
    backends = (
        [p for p in descendants(postmaster) if p != postmaster and marker in cmdline(p)]
        if postmaster
        else []
    )
    out = {}
    for pid in [*backends, *others]:
        seconds = _own_cpu_seconds(pid, reaped=False)
        if seconds is not None:
            out[pid] = seconds
    return out


@dataclass(frozen=True)
class CpuSample:
    """CPU counters at one moment: the server tree, our store processes, the whole machine."""

    server: float
    stores: dict[int, float]
    machine: float
    at: float

    def store_delta(self, later: CpuSample) -> float:
        """Store CPU seconds spent between this sample and `later` (new processes count whole)."""
        return sum(cpu - self.stores.get(pid, 0.0) for pid, cpu in later.stores.items())


def sample_cpu(server_root: int, store_roots: list[int], marker: str) -> CpuSample:
    """Read every CPU counter the serving figures need."""
    return CpuSample(
        tree_cpu_seconds([server_root]),
        store_process_cpu(store_roots, marker) if store_roots else {},
        machine_cpu_seconds(),
        time.monotonic(),
    )


SMAPS_FIELDS = {
    "Rss": "rss",
    "Pss": "pss",
    "Shared_Clean": "shared_clean",
    "Shared_Dirty": "shared_dirty",
    "Private_Clean": "private_clean",
    "Private_Dirty": "private_dirty",
}


def smaps_rollup(pid: int) -> dict[str, int]:
    """Memory of a process summed over its mappings, in bytes, under the smaps names
    (Rss, Pss, Shared_Clean, Shared_Dirty, Private_Clean, Private_Dirty); {} when gone."""
    process = _process(pid)
    if process is None:
        return {}
    try:
        maps = process.memory_maps(grouped=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return {}
    return {name: sum(getattr(m, field) for m in maps) for name, field in SMAPS_FIELDS.items()}


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET a URL on loopback; return (status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_until_ready(
    url: str, process: subprocess.Popen, timeout: float = 120.0, expect: bytes | None = None
) -> float:
    """Poll `url` until it answers 200 (and contains `expect`); return seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before ready")
        status, body = http_get(url, timeout=2.0)
        if status == 200 and (expect is None or expect in body):
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"{url} was not ready after {timeout:.0f}s")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a server we started: SIGINT to its process group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, 2)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
