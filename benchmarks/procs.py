"""Process helpers read from /proc: CPU time of a process tree, memory maps, free ports."""

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

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int | None:
    """The parent process id (None when the process is gone)."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def all_pids() -> list[int]:
    """Every process id visible in /proc."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    parents: dict[int, list[int]] = {}
    for pid in all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of these processes and of their children already reaped."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds of every process under `roots`, short-lived ones (reaped) included."""
    return cpu_seconds(pid for root in roots for pid in descendants(root))


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def load_average() -> float:
    """One-minute load average."""
    return os.getloadavg()[0]


def _cmdline(pid: int) -> bytes:
    """The raw command line of a process (b'' when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def store_process_cpu(roots: list[int], marker: bytes) -> dict[int, float]:
    """CPU seconds of our store processes: `roots[1:]` whole, and under `roots[0]` (the
    PostgreSQL postmaster; 0 when it was not found) only backends whose title contains
    `marker`, our database's name, so backends of other databases are not counted."""
    out = {}
    postmaster, others = roots[0], roots[1:]
    backends = (
        [p for p in descendants(postmaster) if p != postmaster and marker in _cmdline(p)]
        if postmaster
        else []
    )
    for pid in [*backends, *others]:
        fields = _stat_fields(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
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


def sample_cpu(server_root: int, store_roots: list[int], marker: bytes) -> CpuSample:
    """Read every CPU counter the serving figures need."""
    return CpuSample(
        tree_cpu_seconds([server_root]),
        store_process_cpu(store_roots, marker) if store_roots else {},
        machine_cpu_seconds(),
        time.monotonic(),
    )


def smaps_rollup(pid: int) -> dict[str, int]:
    """Memory of a process from /proc/<pid>/smaps_rollup, in bytes (Rss, Pss, Shared_*, ...)."""
    out: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return out
    for line in lines[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key.strip()] = int(parts[0]) * 1024
    return out


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
