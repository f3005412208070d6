"""A Python client for the lobwife API that keeps working when lobwife is briefly down.

    from lobstore.client import Client
    lobwife = Client("http://lobwife:8081", outbox="/var/lib/lobster/outbox.db")
    lobwife.update_task("T42", status="active", actor="lobster-swe-t42", defer=True)

Every write carries an ``Idempotency-Key``, so a retry after a lost response never counts
twice. Connection errors and 502/503/504 are retried with backoff and jitter. A write marked
``defer=True`` that still cannot reach lobwife goes to the outbox and the call returns a
:class:`Queued`; the outbox is replayed in order on the next successful call and by
:meth:`Client.flush`. Reads never queue: they raise :class:`UnavailableError`.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .errors import (
    APIConflictError,
    APIError,
    APINotFoundError,
    APIServerError,
    APIValidationError,
    UnavailableError,
)
from .outbox import Outbox, Rejected
from .transport import Transport

__all__ = [
    "APIConflictError",
    "APIError",
    "APINotFoundError",
    "APIServerError",
    "APIValidationError",
    "Client",
    "FlushResult",
    "Queued",
    "UnavailableError",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8081"
ENV_URL = "LOBWIFE_URL"
API = "/api/v1"


@dataclass(frozen=True)
class Queued:
    """A deferrable write that could not reach lobwife and waits in the outbox."""

    idempotency_key: str
    method: str
    path: str
    queued = True


@dataclass
class FlushResult:
    sent: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    remaining: int = 0
    error: str | None = None  # why the flush stopped early, if it did


class Client:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        outbox: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        actor: str | None = None,
    ) -> None:
        """``base_url`` defaults to ``$LOBWIFE_URL``, else http://127.0.0.1:8081. Without an
        ``outbox`` path, ``defer=True`` writes raise UnavailableError like any other."""
        self.transport = Transport(base_url or os.environ.get(ENV_URL) or DEFAULT_URL,
                                   timeout=timeout, retries=retries, backoff=backoff)
        self.outbox = Outbox(outbox) if outbox is not None else None
        self.actor = actor
        self._flushing = threading.Lock()

    # -- tasks --------------------------------------------------------------------------------
    def create_task(self, name: str, *, defer: bool = False, **fields: Any) -> dict | Queued:
        return self._write("POST", "/tasks", {"name": name, **self._actor(fields)}, defer)

    def get_task(self, ref: str | int) -> dict:
        return self._read(f"/tasks/{_ref(ref)}")

    def list_tasks(self, **filters: Any) -> list[dict]:
        """One page of tasks (filters as the API's query parameters: status, type, limit, after, …)."""
        return self._read("/tasks", query=filters)

    def update_task(self, ref: str | int, *, defer: bool = False, **fields: Any) -> dict | Queued:
        return self._write("PATCH", f"/tasks/{_ref(ref)}", self._actor(fields), defer)

    def cancel_task(self, ref: str | int, *, defer: bool = False) -> dict | Queued:
        return self._write("DELETE", f"/tasks/{_ref(ref)}", None, defer)

    def task_events(self, ref: str | int) -> list[dict]:
        return self._read(f"/tasks/{_ref(ref)}/events")

    def add_event(self, ref: str | int, event_type: str, *, detail: str | None = None,
                  data: dict | None = None, actor: str | None = None, defer: bool = False) -> dict | Queued:
        optional = {"detail": detail, "data": data, "actor": actor}
        body = self._actor({"event_type": event_type, **{k: v for k, v in optional.items() if v is not None}})
        return self._write("POST", f"/tasks/{_ref(ref)}/events", body, defer)

    def health(self) -> dict:
        return self.transport.request("GET", "/health").body

    # -- the outbox ---------------------------------------------------------------------------
    def flush(self) -> FlushResult:
        """Replay the outbox in order. Stops at the first entry that cannot reach lobwife
        (it stays, with everything after it); an entry refused with a 4xx is moved aside."""
        result = FlushResult()
        if self.outbox is None:
            return result
        with self._flushing:
            while (entry := self.outbox.oldest()) is not None:
                try:
                    self.transport.request(entry.method, entry.path, body=entry.body,
                                           headers={"Idempotency-Key": entry.idempotency_key})
                except UnavailableError as exc:
                    self.outbox.failed_attempt(entry, str(exc))
                    result.error = str(exc)
                    break
                except APIError as exc:
                    if exc.status >= 500:
                        self.outbox.failed_attempt(entry, str(exc))
                        result.error = str(exc)
                        break
                    log.warning("lobwife refused queued %s %s: %s", entry.method, entry.path, exc)
                    self.outbox.reject(entry, exc.status, exc.message)
                    result.rejected.append(Rejected(entry, exc.status, exc.message))
                    continue
                self.outbox.done(entry)
                result.sent += 1
            result.remaining = self.outbox.pending()
        return result

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------
    def _read(self, path: str, query: dict[str, Any] | None = None) -> Any:
        body = self.transport.request("GET", API + path, query=query).body
        self._flush_soon()
        return body

    def _write(self, method: str, path: str, body: dict | None, defer: bool) -> Any:
        key = str(uuid.uuid4())
        target = API + path
        if defer and self.outbox is not None:
            # Queued writes go first: a new write must not overtake older ones.
            if self.outbox.pending() and self.flush().remaining:
                return self._queue(method, target, body, key)
            try:
                return self._send(method, target, body, key)
            except UnavailableError:
                return self._queue(method, target, body, key)
        response = self._send(method, target, body, key)
        self._flush_soon()
        return response

    def _send(self, method: str, target: str, body: dict | None, key: str) -> Any:
        return self.transport.request(method, target, body=body, headers={"Idempotency-Key": key}).body

    def _queue(self, method: str, target: str, body: dict | None, key: str) -> Queued:
        assert self.outbox is not None
        self.outbox.add(method, target, body, key)
        log.warning("lobwife unreachable: queued %s %s (%d waiting)", method, target, self.outbox.pending())
        return Queued(key, method, target)

    def _flush_soon(self) -> None:
        """After a call that reached lobwife: replay what waits, if nobody else is."""
        if self.outbox is None or self._flushing.locked() or not self.outbox.pending():
            return
        self.flush()

    def _actor(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The body with this client's default actor, unless the call named one."""
        body = dict(fields)
        if self.actor and body.get("actor") is None:
            body["actor"] = self.actor
        return body


def _ref(ref: str | int) -> str:
    return quote(str(ref), safe="")
