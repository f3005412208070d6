"""HTTP for the client: standard library only, keep-alive per thread, retries with backoff
and jitter on connection errors and 502/503/504."""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from .errors import UnavailableError, api_error

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
CONNECTION_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timed out, dropped


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: dict[str, str]


class Transport:
    def __init__(self, base_url: str, *, timeout: float = 10.0, retries: int = 3, backoff: float = 0.25,
                 token: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"lobwife URL must look like http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._root = parts.path.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # Sent on every request; never logged (nothing here logs headers).
        self._authorization = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> Response:
        """Send one request, retrying what is safe to retry; raise APIError for a 4xx/5xx
        answer and UnavailableError when every attempt failed to get one."""
        target = self._root + path + (f"?{urlencode(_flatten(query))}" if query else "")
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        sent_headers = {"Accept": "application/json", **self._authorization, **(headers or {})}
        if payload is not None:
            sent_headers["Content-Type"] = "application/json"
        attempts = 1 + (self.retries if retries is None else retries)
        last_problem = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._delay(attempt))
            try:
                status, raw, response_headers = self._send(method, target, payload, sent_headers)
            except CONNECTION_ERRORS as exc:
                self._drop_connection()
                last_problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.info("lobwife %s %s failed (%s), attempt %d/%d", method, path, last_problem, attempt + 1, attempts)
                continue
            decoded = _decode(raw)
            if status in RETRY_STATUSES:
                last_problem = f"HTTP {status}"
                continue
            if status >= 400:
                raise api_error(status, decoded if isinstance(decoded, dict) else {"error": str(decoded)})
            return Response(status, decoded, response_headers)
        raise UnavailableError(
            f"lobwife at {self.base_url} is unavailable: {method} {path} failed {attempts} times "
            f"(last: {last_problem})"
        )

    def open_stream(self, path: str, query: dict[str, Any], headers: dict[str, str], timeout: float
                    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """A long-lived GET on a connection of its own (the caller closes it); a 4xx/5xx
        answer raises APIError, as :meth:`request` does (503 included: the caller retries)."""
        target = self._root + path + (f"?{urlencode(_flatten(query))}" if query else "")
        factory = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = factory(self._host, self._port, timeout=timeout)
        try:
            conn.request("GET", target, headers={**self._authorization, **headers})
            response = conn.getresponse()
            if response.status >= 400:
                body = _decode(response.read())
                error = api_error(response.status, body if isinstance(body, dict) else {"error": str(body)})
                error.retry_after = _seconds(response.getheader("Retry-After"))
                raise error
        except BaseException:
            conn.close()
            raise
        return conn, response

    def close(self) -> None:
        self._drop_connection()

    def _send(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        # One keep-alive connection per thread: http.client connections are not thread-safe.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            factory = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = factory(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        conn.request(method, target, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        if response.will_close:
            self._drop_connection()
        return response.status, raw, {k.lower(): v for k, v in response.getheaders()}

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _delay(self, attempt: int) -> float:
        # Exponential backoff with full jitter: retries from many lobsters do not arrive together.
        return random.uniform(0, self.backoff * (2 ** (attempt - 1)))


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"error": raw[:200].decode("utf-8", "replace")}


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _flatten(query: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for key, value in query.items():
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((key, str(item)))
    return pairs
