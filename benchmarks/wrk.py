"""Drive a server with wrk over loopback: Lua scripts that cycle through real ids, JSON results."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

RESULT_MARK = "WRKJSON "

# Each wrk thread walks the path list from its own offset; `{n}` in a path or body becomes a
# per-request counter unique across threads (cache-busting nonces, unique event ids).
_LUA = r"""
local paths = {PATHS}
local method = "{METHOD}"
local body_template = {BODY}
local headers = {["Content-Type"] = "application/json"}
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tonumber(wrk.thread:get("thread_id")) or 0
  counter = math.floor(thread_id * #paths / {THREADS})
end

function request()
  counter = counter + 1
  local nonce = "{RUN}t" .. thread_id .. "n" .. counter
  local path = string.gsub(paths[(counter % #paths) + 1], "{n}", nonce)
  if body_template then
    local body = string.gsub(body_template, "{n}", nonce)
    return wrk.format(method, path, headers, body)
  end
  return wrk.format(method, path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{MARK}{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def ensure_wrk() -> str:
    """Path of wrk; install the Debian package when missing and we may, else say how to."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "install", "-y", "-q", "wrk"]
        if subprocess.run(install, capture_output=True, env=env, check=False).returncode != 0:
            subprocess.run([apt, "update", "-q"], capture_output=True, env=env, check=False)
            subprocess.run(install, capture_output=True, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "wrk is not installed and could not be installed here: install it "
        "(`apt-get install -y wrk` on Debian/Ubuntu, `brew install wrk` on macOS) and run again."
    )


def _lua_string(text: str) -> str:
    """A Lua long-bracket string literal holding `text` verbatim."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (µs) and errors."""

    requests: int
    duration_s: float
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float
    errors: int
    status_errors: int
    bytes: int

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """JSON-friendly figures."""
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_us / 1000, 3),
            "p90_ms": round(self.p90_us / 1000, 3),
            "p99_ms": round(self.p99_us / 1000, 3),
            "max_ms": round(self.max_us / 1000, 3),
            "mean_ms": round(self.mean_us / 1000, 3),
            "errors": self.errors,
            "status_errors": self.status_errors,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Workload:
    """What to send: paths cycled in order, optionally a POST body template."""

    paths: list[str]
    method: str = "GET"
    body: str | None = None

    def script(self, threads: int, run_tag: str) -> str:
        """The Lua script for wrk."""
        paths = "{" + ",".join(_lua_string(p) for p in self.paths) + "}"
        body = _lua_string(self.body) if self.body is not None else "nil"
        return (
            _LUA.replace("{PATHS}", paths)
            .replace("{METHOD}", self.method)
            .replace("{BODY}", body)
            .replace("{THREADS}", str(threads))
            .replace("{RUN}", run_tag)
            .replace("{MARK}", RESULT_MARK)
        )


def run_wrk(
    base_url: str,
    workload: Workload,
    *,
    connections: int,
    duration_s: float,
    threads: int = 2,
    run_tag: str = "r",
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk for `duration_s` with `connections`; return its figures."""
    wrk = ensure_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(workload.script(min(threads, connections), run_tag))
        script = handle.name
    try:
        command = [
            wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
            f"--timeout={timeout_s:.0f}s", "-s", script, base_url,
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    data = orjson.loads(line[len(RESULT_MARK) :])
    errors = sum(
        data[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        p50_us=data["p50_us"],
        p90_us=data["p90_us"],
        p99_us=data["p99_us"],
        max_us=data["max_us"],
        mean_us=data["mean_us"],
        errors=errors,
        status_errors=data["status_errors"],
        bytes=data["bytes"],
    )
