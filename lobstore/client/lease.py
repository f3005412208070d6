"""A lease kept alive on a background thread while a lobster works (``Client.holding``).

    task = lobwife.claim("lobster-swe-7", types=["swe"])
    with lobwife.holding(task["task_id"], lobster="lobster-swe-7") as lease:
        for step in work:
            if lease.lost:  # the store gave the task to someone else: stop
                break
            step()

It heartbeats every third of the lease. A 409 means the task was taken back (the sweep
re-queued or failed it, or it was re-assigned): ``lost`` turns true with the reason and the
thread ends. Errors that may pass (lobwife unreachable, a 5xx) are logged and retried at the
next beat; the lease has two beats' room for them.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from .errors import APIConflictError, APIError, APINotFoundError, UnavailableError

if TYPE_CHECKING:
    from . import Client

log = logging.getLogger(__name__)

DEFAULT_LEASE = 300  # the server's default lease (seconds), when the holder asks for none


class LeaseKeeper:
    def __init__(self, client: Client, ref: str | int, *, lobster: str | None = None,
                 lease_seconds: int | None = None, every: float | None = None) -> None:
        self.client = client
        self.ref = str(ref)
        self.lobster = lobster
        self.lease_seconds = lease_seconds
        self.every = every if every is not None else (lease_seconds or DEFAULT_LEASE) / 3
        if not self.every > 0:
            raise ValueError(f"the heartbeat interval must be above 0 seconds, got {self.every!r}")
        self.lost = False
        self.lost_reason: str | None = None
        self.last_error: str | None = None
        self.lease_expires_at: str | None = None
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseKeeper:
        self._thread = threading.Thread(target=self._run, name=f"lobstore-lease-{self.ref}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop heartbeating (the lease then lapses unless the task ended first)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def beat(self) -> dict[str, Any]:
        """One heartbeat now, on the caller's thread."""
        task = self.client.heartbeat(self.ref, lobster=self.lobster, lease_seconds=self.lease_seconds)
        self.beats += 1
        self.lease_expires_at = task.get("lease_expires_at")
        return task

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
                self.last_error = None
            except (APIConflictError, APINotFoundError) as exc:
                self.lost, self.lost_reason = True, exc.message
                log.warning("lease of %s lost: %s", self.ref, exc.message)
                return
            except (UnavailableError, APIError) as exc:
                self.last_error = str(exc)
                log.warning("heartbeat of %s failed (%s); trying again in %.0f s", self.ref, exc, self.every)
