"""The change feed for the client: an iterator over ``GET /api/v1/events/stream`` that
reconnects and resumes by itself (standard library only)."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from typing import Any

from .errors import APIError
from .transport import CONNECTION_ERRORS, RETRY_STATUSES, Transport

log = logging.getLogger(__name__)

STREAM_PATH = "/api/v1/events/stream"
READ_TIMEOUT = 45.0  # seconds without a byte (the server sends a heartbeat every 15 s): the stream is dead
MAX_DELAY = 30.0  # the longest pause between reconnection attempts


class EventStream:
    """Iterate to get each event of the feed once, in id order, as the JSON the server sends
    (``id``, ``event_type``, ``task`` (null for an event of no task: ``cost``, ``audit_finding``,
    a fleet ``budget_alert``), ``status``, ``data``, ...). A dropped connection, a
    restarted server or a busy one (503) is waited out and the stream resumes after the last
    event it yielded: nothing is missed or repeated. ``last_id`` is that resume point; keep it
    to start a later stream there (``after=``). ``close()`` (from another thread too) ends it."""

    def __init__(self, transport: Transport, *, after: int | None = None, query: dict[str, Any] | None = None,
                 backoff: float = 0.5, read_timeout: float = READ_TIMEOUT) -> None:
        self.transport = transport
        self.last_id = after
        self.query = {k: v for k, v in (query or {}).items() if v is not None}
        self.backoff = backoff
        self.read_timeout = read_timeout
        self.reconnects = 0
        self._closed = threading.Event()
        self._conn: Any = None
        self._response: Any = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        failures = 0
        while not self._closed.is_set():
            try:
                for event in self._one_connection():
                    failures = 0
                    yield event
            except APIError as exc:
                if exc.status not in RETRY_STATUSES:
                    raise
                pause = getattr(exc, "retry_after", None)
                log.info("event stream: %s; retrying", exc)
            except CONNECTION_ERRORS as exc:
                pause = None
                if not self._closed.is_set():
                    log.info("event stream after %s dropped (%s); reconnecting", self.last_id, exc)
            finally:
                self._disconnect()
            if self._closed.is_set():
                return
            failures += 1
            self.reconnects += 1
            delay = pause if pause is not None else random.uniform(0, min(MAX_DELAY, self.backoff * 2 ** min(failures, 6)))
            self._closed.wait(delay)

    def close(self) -> None:
        self._closed.set()
        self._disconnect()

    def _one_connection(self) -> Iterator[dict[str, Any]]:
        headers = {"Accept": "text/event-stream"}
        query = dict(self.query)
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        else:
            query.pop("after", None)
        self._conn, response = self.transport.open_stream(STREAM_PATH, query, headers, self.read_timeout)
        self._response = response
        event_id, data = None, []
        while True:
            raw = response.readline()
            if not raw:  # the server ended the stream (it stops, or restarts)
                raise ConnectionResetError("the server closed the stream")
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:  # the end of a block
                if event_id is not None:
                    self.last_id = event_id  # also an id-only block: a filtered stream's new resume point
                if data:
                    yield json.loads("\n".join(data))
                event_id, data = None, []
                continue
            if line.startswith(":"):
                continue  # a comment: the heartbeat
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id" and value.isdigit():
                event_id = int(value)
            elif name == "data":
                data.append(value)

    def _disconnect(self) -> None:
        # Both: the response holds the socket open until it is closed too.
        for part in (self._response, self._conn):
            if part is not None:
                try:
                    part.close()
                except OSError:
                    pass
        self._conn = self._response = None
