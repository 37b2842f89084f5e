"""Logging, configured in one place for the API workers, the trainer and the command line.

``TASTEMAKER_LOG_FORMAT=json`` writes one JSON object per line (``ts``, ``level``, ``logger``,
``message`` and the record's structured fields); ``console`` writes the same as readable text.
Structured fields travel in ``extra={"fields": {...}}`` so that both formats show them.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["json", "console"]

#: The logger of access lines (one per request, see :mod:`app.access`).
ACCESS = "tastemaker.access"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            body.update(fields)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """``time level logger message key=value …``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (redirected, captured)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(log_format: LogFormat = "console", level: str = "INFO") -> None:
    """Send every record of this process to stderr in ``log_format`` (idempotent).

    Uvicorn's own loggers go through the same handler, so a worker writes one format.
    """
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
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
