"""Writes: each in one transaction, made idempotent by an ``Idempotency-Key`` header."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bottle import HTTPResponse, request

from ...errors import LobstoreError, ValidationError
from ...repositories.idempotency import StoredResponse
from ...store import Store
from .wire import PREFIXES, prefix_of, request_body

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on an answer replayed from a stored response
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII: UUIDs, ULIDs, "lobster-t42-17"
PURGE_EVERY = 60.0  # seconds between sweeps of expired idempotency keys


class IdempotentWrites:
    """Runs write handlers in one transaction, and makes them idempotent by key.

    Without an ``Idempotency-Key`` the handler simply runs in its transaction. With one, the
    key is claimed, the handler runs and its response is stored, all in that same transaction:
    a crash leaves either all three or none. A repeat with the same key, method, path and
    request gets the stored response (marked ``Idempotent-Replayed: true``) and does nothing;
    the same key with a different request is a 422. Only answers the handler returns are
    stored: a refused request (4xx/5xx raised as an error) rolled back and changed nothing, so
    repeating it simply tries again.
    """

    def __init__(self, store: Store, *, max_body: int, ttl: timedelta, purge_every: float) -> None:
        self.store = store
        self.max_body = max_body
        self.ttl = ttl
        self.purge_every = purge_every
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    def wrap(self, handler: Callable[..., HTTPResponse], *, shared: bool = True) -> Callable[..., HTTPResponse]:
        """``shared``: the route means the same under /api and /api/v1, so a key sent to one
        spelling is the key of the other too (otherwise each path keeps its own)."""
        def write(**params: Any) -> HTTPResponse:
            key = idempotency_key()
            self._purge_if_due()
            # Read the body before taking the write lock: a slow client then holds up no one,
            # and a 400 or 413 costs nothing.
            request_body(self.max_body)
            if key is None:
                with self.store.transaction() as tx:
                    return handler(tx, **params)
            fingerprint = request_fingerprint(self.max_body)
            method, path = request.method, canonical_path(request.path) if shared else request.path
            with self.store.transaction() as tx:
                stored = tx.idempotency.claim(key, method, path, fingerprint, ttl=self.ttl)
                if stored is None:
                    response = handler(tx, **params)
                    tx.idempotency.record(key, method, path, _to_stored(response))
                    return response
            log.info("replaying the stored answer to %s %s (Idempotency-Key %s)", method, path, key)
            return HTTPResponse(stored.body.encode(), stored.status, {**stored.headers, REPLAYED_HEADER: "true"})

        write.__name__ = handler.__name__
        return write

    def plain(self, handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
        def write(**params: Any) -> HTTPResponse:
            idempotency_key()  # a malformed key is refused here as everywhere
            request_body(self.max_body)
            return handler(**params)

        write.__name__ = handler.__name__
        return write

    def _purge_if_due(self) -> None:
        """Sweep expired keys now and then, in a transaction of its own: a sweep that fails
        is logged and never fails the write that triggered it."""
        now = time.monotonic()
        if now < self._next_purge or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._next_purge = now + self.purge_every
            self.store.idempotency.purge_expired()
        except LobstoreError as exc:
            log.warning("could not remove expired idempotency keys: %s", exc)
        finally:
            self._purge_lock.release()


def _to_stored(response: HTTPResponse) -> StoredResponse:
    headers = {name: value for name, value in response.headerlist if name.lower() != "content-length"}
    body = getattr(response, _STORED_INSTEAD, None)
    if body is None:
        body = response.body if isinstance(response.body, bytes) else str(response.body).encode()
    return StoredResponse(response.status_code, body.decode("utf-8"), headers)


_STORED_INSTEAD = "lobstore_stored_body"
WITHHELD = "withheld: a secret is shown once, in the first answer; make a new one"


def keep_secret(response: HTTPResponse, secret_fields: tuple[str, ...]) -> HTTPResponse:
    """Mark an answer that carries a secret (a new credential, a task credential): under an
    Idempotency-Key the stored answer — and so a replay — has ``secret_fields`` replaced by a
    note, so no secret is ever written to the database."""
    data = json.loads(response.body)
    stored = {**data, **{name: WITHHELD for name in secret_fields if name in data}}
    setattr(response, _STORED_INSTEAD, json.dumps(stored, ensure_ascii=False, separators=(",", ":")).encode())
    response.set_header("Cache-Control", "no-store")
    return response


def outside_transaction(handler: Callable[..., HTTPResponse]) -> Callable[..., HTTPResponse]:
    """Marks a write handler that must not run inside the request's write transaction: it
    does no database work of its own, or it waits on another service (holding the store's
    write lock meanwhile would stall every other writer). Its answer is not stored under an
    Idempotency-Key, so it must be safe to repeat."""
    handler.outside_transaction = True  # type: ignore[attr-defined]
    return handler


def idempotency_key() -> str | None:
    key = request.environ.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not _KEY_RE.match(key):
        raise ValidationError(
            f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters (a UUID will do), "
            f"got {key[:40]!r}", field=IDEMPOTENCY_HEADER,
        )
    return key


def request_fingerprint(max_body: int) -> str:
    """What makes two requests with one key "the same": the body (as JSON, so key order and
    spacing do not matter), the query string and If-Match."""
    raw = request_body(max_body)
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # not JSON: compare the bytes; the handler refuses it anyway
        body = raw
    digest = hashlib.sha256()
    for part in (body, request.environ.get("QUERY_STRING", ""), request.environ.get("HTTP_IF_MATCH", "")):
        data = part if isinstance(part, bytes) else part.encode("latin-1", "replace")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def canonical_path(path: str) -> str:
    """One key scope for both spellings of a route: /api/v1/tasks and /api/tasks are one."""
    prefix = prefix_of(path)
    return PREFIXES[0] + path[len(prefix):] if prefix else path
