"""The change feed over HTTP: ``GET /api/v1/events/stream`` (Server-Sent Events) and its
long-poll form ``GET /api/v1/events?after=N&wait=25``.

Each open stream (and each long poll that waits) holds one of the server's request threads,
so they are counted: beyond ``max_streams`` a new one gets a JSON 503 with ``Retry-After``
and the other requests keep their threads. A stream sends a comment every
``heartbeat`` seconds when nothing happens (proxies keep it open, a gone client is noticed),
and ends after ``stream_seconds`` or when the server stops (``store.backend.changes.close()``); clients resume with
``Last-Event-ID``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping

from bottle import HTTPResponse, request

from ...errors import LobstoreError, UnavailableError, ValidationError
from ...feed import FeedFilter, FeedFollower, feed_item
from ...models import TaskEvent
from ...repositories.events import check_cursor, check_limit
from ...status import STATUSES
from ...store import Store
from ...work import waiting
from .handlers import Handlers
from .wire import json_response, read_query, single, whole_number

log = logging.getLogger(__name__)

HEARTBEAT = 15.0  # seconds between keep-alive comments on a quiet stream
MAX_WAIT = 60  # seconds a long poll may wait
RETRY_AFTER = 5  # seconds a refused stream is told to wait
RECONNECT_MS = 1000  # what a stream tells EventSource to wait before it reconnects
DEFAULT_MAX_STREAMS = 16
STREAM_SECONDS = 3600.0  # a stream ends after this (the client resumes): no thread is held for ever
FILTERS = ("task", "type", "status")
LONG_POLL = ("after", "wait", "limit", *FILTERS)
LONG_POLL_PAGE = 100


class TooManyStreamsError(UnavailableError):
    code = "too_many_streams"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after  # answered in Retry-After


class StreamSlots:
    """At most ``limit`` streams and waiting long polls at once."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max streams must be at least 1, got {limit}")
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    def take(self) -> None:
        if not self._free.acquire(blocking=False):
            raise TooManyStreamsError(
                f"the server already serves {self.limit} event streams and long polls; retry in "
                f"{RETRY_AFTER} s (or raise --max-streams)", retry_after=RETRY_AFTER)

    def give(self) -> None:
        self._free.release()


class FeedApi(Handlers):
    def __init__(self, store: Store, *, max_body: int, max_streams: int = DEFAULT_MAX_STREAMS,
                 heartbeat: float = HEARTBEAT, stream_seconds: float = STREAM_SECONDS) -> None:
        super().__init__(store, max_body=max_body)
        self.slots = StreamSlots(max_streams)
        self.heartbeat = heartbeat
        self.stream_seconds = stream_seconds

    def long_poll(self) -> HTTPResponse:
        params = read_query(LONG_POLL)
        after = _cursor(single(params, "after") if "after" in params else "0", "after")
        wait = whole_number(single(params, "wait"), "wait") if "wait" in params else 0
        if wait > MAX_WAIT:
            raise ValidationError(f"wait is at most {MAX_WAIT} seconds, got {wait}", field="wait")
        limit = check_limit(whole_number(single(params, "limit"), "limit") if "limit" in params else LONG_POLL_PAGE)
        follower = FeedFollower(self.store, after, self._filter(params))
        events, _ = follower.read(limit)
        if not events and wait:
            self.slots.take()
            try:
                with waiting():
                    events = follower.wait(wait, limit=limit)
            finally:
                self.slots.give()
        return json_response({"events": [feed_item(e) for e in events], "last_id": follower.cursor})

    def stream(self) -> HTTPResponse:
        params = read_query(("after", *FILTERS))
        resume = request.get_header("Last-Event-ID")  # a reconnecting EventSource: wins over ?after
        if resume is not None:
            after = _cursor(resume.strip(), "Last-Event-ID")
        elif "after" in params:
            after = _cursor(single(params, "after"), "after")
        else:
            after = self.store.events.latest_id()  # no cursor: from now on
        follower = FeedFollower(self.store, after, self._filter(params))
        self.slots.take()
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                   "X-Accel-Buffering": "no"}
        return HTTPResponse(self._events(follower), 200, headers)

    def _events(self, follower: FeedFollower) -> Iterator[bytes]:
        # Runs while cheroot sends the answer; a write to a gone client ends it (close()).
        try:
            yield f"retry: {RECONNECT_MS}\n: lobstore feed after {follower.cursor}\n\n".encode()
            sent = follower.cursor
            signal = self.store.backend.changes
            until = time.monotonic() + self.stream_seconds
            while not signal.closed and (left := until - time.monotonic()) > 0:
                with waiting():
                    events = follower.wait(min(self.heartbeat, left))
                if events:
                    yield b"".join(_sse(event) for event in events)
                    sent = events[-1].id
                elif not signal.closed:
                    # A filtered stream moves its resume point past what it skipped (an id-only
                    # block updates EventSource's last id and is no event).
                    moved = f"id: {follower.cursor}\n\n" if follower.cursor != sent else ""
                    sent = follower.cursor
                    yield f": heartbeat {time.time():.0f}\n{moved}\n".encode()
        except LobstoreError as exc:  # the database went away mid-stream: the client resumes later
            log.warning("event stream after %s ended: %s", follower.cursor, exc)
        finally:
            self.slots.give()

    def _filter(self, params: Mapping[str, list[str]]) -> FeedFilter:
        task_id = self.store.tasks.get(single(params, "task")).id if "task" in params else None
        types = _listed(params, "type")
        statuses = _listed(params, "status")
        for status in statuses or ():
            if status not in STATUSES:
                raise ValidationError(f"unknown status {status!r}; one of {', '.join(STATUSES)}", field="status")
        return FeedFilter(task_id=task_id, types=types, statuses=statuses)


def _sse(event: TaskEvent) -> bytes:
    data = json.dumps(feed_item(event), ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.event_type}\ndata: {data}\n\n".encode()


def _listed(params: Mapping[str, list[str]], name: str) -> frozenset[str] | None:
    """``?type=a,b`` or ``?type=a&type=b``."""
    if name not in params:
        return None
    values = frozenset(v.strip() for value in params[name] for v in value.split(",") if v.strip())
    if not values:
        raise ValidationError(f"{name} must name at least one value", field=name)
    return values


def _cursor(text: str, name: str) -> int:
    return check_cursor(whole_number(text, name), name) or 0
