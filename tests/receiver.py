"""A real local HTTP receiver of outbound webhooks, for tests (127.0.0.1, a free port)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body."""
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        """The event id header."""
        return self.headers["x-tastemaker-event-id"]


class _Server(ThreadingHTTPServer):
    # The dispatcher opens up to 64 connections at once: a backlog of 5 would refuse some.
    request_queue_size = 256
    daemon_threads = True


class Receiver:
    """Records every POST; answers 200, or 503 while failing; can hold one request."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.failures_per_event = 0  # answer 503 to each event's first N attempts
        self.failing = False  # answer 503 to everything
        self.hold = threading.Event()  # set: the next request waits until `release` is set
        self.release = threading.Event()
        self.held: Received | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        """Where to deliver."""
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        """Listen (again, on the same port once it has one)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                got = Received(
                    time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body
                )
                status = receiver._answer(got)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: deliveries meet a refused connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, got: Received) -> int:
        with self._lock:
            self.received.append(got)
            attempts = sum(r.event_id == got.event_id for r in self.received)
            hold = self.hold.is_set() and self.held is None
            if hold:
                self.held = got
        if hold:
            self.release.wait(30)
        if self.failing or attempts <= self.failures_per_event:
            return 503
        return 200

    def by_event(self) -> dict[str, list[Received]]:
        """Requests grouped by event id, in arrival order."""
        with self._lock:
            grouped: dict[str, list[Received]] = {}
            for r in self.received:
                grouped.setdefault(r.event_id, []).append(r)
            return grouped
