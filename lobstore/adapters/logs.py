"""How lobstore's processes log: plain text for people, or one JSON object per line for a log
pipeline (``--log-format json``), with the id of the HTTP request a line belongs to.

The request id lives in a context variable that :class:`~lobstore.adapters.access.RequestLog`
sets for the duration of a request, so every line logged while serving it — by any module, in
that request's thread — carries it without being passed around.

A JSON line::

    {"time": "2026-03-01T12:00:00.123Z", "level": "INFO", "logger": "lobstore.access",
     "message": "...", "request_id": "5f0c...", "method": "GET", "route": "/api/tasks/<ref>",
     "path": "/api/tasks/T1", "status": 200, "duration_ms": 1.8, "bytes": 512, "remote": "10.0.0.7"}

``request_id`` is present on every line logged during a request; the access line adds the
request's fields; a line with an exception adds ``exception`` (the traceback as text).
Standard library only: ``lobstore --help`` must not import more.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import IO, Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("lobstore_request_id", default=None)


class AccessLine:
    """The message of an access log line: the request's fields, kept as they are (JSON takes
    them one by one) and made into text only if a handler writes text. One object instead of
    ``extra=`` fields and %-arguments: the access line is on every request's path."""

    __slots__ = ("remote", "request_id", "method", "route", "path", "query", "status", "bytes", "duration_ms")

    def __init__(self, remote: str, rid: str, method: str, route: str, path: str, query: str, status: int,
                 size: int | None, duration_ms: float) -> None:
        self.remote, self.request_id, self.method, self.route = remote, rid, method, route
        self.path, self.query = path, query
        self.status, self.bytes, self.duration_ms = status, size, duration_ms

    def __str__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return (f'{self.remote} {self.request_id} "{self.method} {self.path}{query}" {self.status} '
                f'{"-" if self.bytes is None else self.bytes} {self.duration_ms:.1f}ms')

    def fields(self) -> dict[str, Any]:
        return {"method": self.method, "route": self.route, "path": self.path, "status": self.status,
                "duration_ms": round(self.duration_ms, 3), "bytes": self.bytes, "remote": self.remote}


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (``record.request_id``; None outside)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (no newline inside: tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            entry["request_id"] = rid
        if isinstance(record.msg, AccessLine):
            entry.update(record.msg.fields())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, and ``[request <id>]`` on the lines of a request (the
    access line names its request itself)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid is not None and not isinstance(record.msg, AccessLine):
            first, newline, rest = line.partition("\n")
            line = f"{first} [request {rid}]{newline}{rest}"
        return line


def configure(level: int = logging.WARNING, log_format: str = "text", stream: IO[str] | None = None) -> None:
    """Log to ``stream`` (stderr) in ``log_format`` at ``level``. Replaces the handler an earlier
    call installed; leaves logging alone if someone else (a test runner, an embedding program)
    already configured the root logger."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_lobstore", False)]
    if root.handlers and not ours:
        return
    for handler in ours:
        root.removeHandler(handler)
    # What no line of ours shows, records need not look up on every call (the logging HOWTO's
    # "Optimization"): the caller's file and line, thread and process names.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._lobstore = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)  # made once: it is on every request's path
_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _utc(created: float) -> str:
    seconds = int(created)
    if _second[0] != seconds:  # formatting the date once per second, not once per line
        _second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second[1]}.{int((created - seconds) * 1000):03d}Z"
