"""The request path's one hook for operations: a request id, an access log line, request metrics.

:class:`RequestLog` wraps the WSGI app:

- **Request id**: ``X-Request-Id`` from the client is kept when it is 1-128 characters of
  ``A-Z a-z 0-9 . _ ~ : / + = @ -``; otherwise (absent, too long, spaces, quotes, control
  characters) a new one is made. It is answered in ``X-Request-Id`` and carried into every log
  line of the request (``logs.request_id``).
- **Access log**: one INFO line per request on the ``lobstore.access`` logger (its own name, so
  it can be silenced alone; ``access_log=False`` skips it without even building the line).
- **Metrics**: the request's method, route *pattern* (``/api/tasks/<ref>``, never the raw path:
  a label per task id would grow without end) and status go to ``metrics.observe_request``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import logs

access_log = logging.getLogger("lobstore.access")

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")
UNMATCHED = "unmatched"  # the route label of a request no route took (404s, probes)


class RequestObserver(Protocol):
    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None: ...


def route_of(environ: dict[str, Any]) -> str:
    """The pattern of the route that took the request (Bottle notes it in the environ)."""
    route = environ.get("bottle.route")
    return getattr(route, "rule", None) or UNMATCHED


def accepted_request_id(value: str | None) -> str:
    """The client's request id if it is a sensible one, else a new one."""
    if value and _VALID_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestLog:
    """WSGI middleware: request id in and out, one access log line, request metrics."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *, metrics: RequestObserver | None = None,
                 access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        began = time.perf_counter()
        rid = accepted_request_id(environ.get("HTTP_X_REQUEST_ID"))
        token = logs.request_id.set(rid)
        seen: dict[str, str] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            seen["size"] = next((v for k, v in headers if k.lower() == "content-length"), "-")
            headers.append((REQUEST_ID_HEADER, rid))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, capture)
        finally:
            seconds = time.perf_counter() - began
            status = seen.get("status", "500")
            method = environ.get("REQUEST_METHOD", "-")
            route = route_of(environ)
            if self.metrics is not None:
                self.metrics.observe_request(method, route, status, seconds)
            if self.access_log:
                size = seen.get("size", "")
                access_log.info(logs.AccessLine(
                    environ.get("REMOTE_ADDR", "-"), rid, method, route, environ.get("PATH_INFO", ""),
                    environ.get("QUERY_STRING", ""), int(status), int(size) if size.isdigit() else None,
                    seconds * 1000,
                ))
            logs.request_id.reset(token)
