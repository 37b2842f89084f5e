"""Logging, configured in one place for the API workers, the trainer and the command line.

``TASTEMAKER_LOG_FORMAT=json`` writes one JSON object per line (``ts``, ``level``, ``logger``,
``message`` and the record's structured fields); ``console`` writes the same as readable text.
Structured fields travel in ``extra={"fields": {...}}`` so that both formats show them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["json", "console"]

#: The logger of access lines (one per request, see :mod:`app.access`).
ACCESS = "tastemaker.access"
#: The most lines a buffered handler keeps before it writes them.
BUFFERED_LINES = 256
_access = logging.getLogger(ACCESS)


class _Clock:
    """A record's time as text, the seconds formatted once per second (strftime is slow)."""

    def __init__(self, seconds: Callable[[int], str], millis: str) -> None:
        self.seconds = seconds
        self.millis = millis
        self.second = -1
        self.text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second, self.text = second, self.seconds(second)
        return self.text + self.millis % ((created - second) * 1000)


def _iso_seconds(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _local_seconds(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock(_iso_seconds, ".%03d+00:00")

    def format(self, record: logging.LogRecord) -> str:
        extra = None
        if record.exc_info:
            extra = {"exception": self.formatException(record.exc_info)}
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
            extra,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: dict[str, Any] | None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """The line of a record with these attributes (see :func:`access`)."""
        body: dict[str, Any] = {
            "ts": self._clock(created),
            "level": level.lower(),
            "logger": logger,
            "message": message,
        }
        if fields:
            body.update(fields)
        if extra:
            body.update(extra)
        return orjson.dumps(body, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """``time level logger message key=value …``."""

    def __init__(self) -> None:
        super().__init__()
        # ``2026-12-06 23:20:01,123`` in local time, as logging's default.
        self._clock = _Clock(_local_seconds, ",%03d")

    def format(self, record: logging.LogRecord) -> str:
        line = self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: dict[str, Any] | None,
    ) -> str:
        """The line of a record with these attributes (see :func:`access`)."""
        line = f"{self._clock(created)} {level:<7} {logger} {message}"
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (redirected, captured).

    ``buffered`` (the API workers): records below WARNING are kept, at most
    :data:`BUFFERED_LINES` of them, and written together by :func:`flush` (once a second, from
    the app) or before the next WARNING or worse, in order. Writing each access line on its
    own was a system call per request (stderr is line-buffered).
    """

    def __init__(self, buffered: bool = False) -> None:
        super().__init__()
        self.buffered = buffered
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not self.buffered or record.levelno >= logging.WARNING:
            self.flush()
            super().emit(record)
            return
        try:
            self.keep(self.format(record))
        except Exception:
            self.handleError(record)

    def keep(self, line: str) -> None:
        """Keep a formatted line for the next :meth:`flush` (written at once when full)."""
        self.lines.append(line)
        if len(self.lines) >= BUFFERED_LINES:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self.lines = self.lines, []
            if lines:
                self.stream.write("\n".join(lines) + "\n")
            super().flush()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(
    log_format: LogFormat = "console", level: str = "INFO", buffered: bool = False
) -> None:
    """Send every record of this process to stderr in ``log_format`` (idempotent).

    Uvicorn's own loggers go through the same handler, so a worker writes one format.
    ``buffered``: see :class:`_Stderr`; call :func:`flush` every second.
    """
    global _handler
    handler = _Stderr(buffered)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    _handler = handler
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tastemaker", False):
            root.removeHandler(old)
    handler._tastemaker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither format shows the caller, thread or process, and looking them up was half of an
    # access line's cost; the logging HOWTO's "Optimization" section names these switches.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The access line is ours (app/access.py): uvicorn's would be a second one per request,
    # and uvicorn writes it whenever its logger has a handler, its parents' included.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False


def flush() -> None:
    """Write the lines this process's handler keeps (see :class:`_Stderr`)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Stderr):
            handler.flush()


_handler: _Stderr | None = None


def _only_sink() -> _Stderr | None:
    """The buffered handler when it is the one place access lines go, with nothing to filter."""
    handler, root = _handler, logging.getLogger()
    if (
        handler is None
        or not handler.buffered
        or root.handlers != [handler]
        or _access.handlers
        or _access.filters
        or root.filters
        or handler.filters
        or not _access.propagate
        or not _access.isEnabledFor(logging.INFO)
        or handler.level > logging.INFO
    ):
        return None
    return handler


def access(message: str, fields: dict[str, Any]) -> None:
    """Write an access line: ``logging.getLogger(ACCESS).info(message, extra={"fields": …})``.

    The same line, level and handler; when the worker's buffered handler is the only place it
    can go (no other handler or filter), the line is formatted straight into it, without a
    :class:`logging.LogRecord` and the handler chain, which were most of an access line's cost.
    """
    handler = _only_sink()
    if handler is None:
        _access.info(message, extra={"fields": fields})
        return
    formatter = handler.formatter
    assert isinstance(formatter, JsonFormatter | ConsoleFormatter)
    line = formatter.line(time.time(), "INFO", ACCESS, message, fields)
    with handler.lock:  # type: ignore[union-attr]
        handler.keep(line)
