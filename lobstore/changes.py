"""The wake-up call for followers of the change feed: "something was written, look again".

One :class:`ChangeSignal` per backend. Every write transaction notifies it after its commit,
so a feed stream or a long poll in this process waits on it instead of polling the database.
Writes of *other* processes are not heard here: waiters also wake after a timeout and look
anyway. A cross-process source (PostgreSQL LISTEN/NOTIFY) plugs in by calling ``notify()``.
"""

from __future__ import annotations

import threading


class ChangeSignal:
    """A counter of committed writes behind a Condition: ``wait(seen)`` returns as soon as
    the counter moved past ``seen`` (or on timeout, or when closed)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._closed = False

    @property
    def generation(self) -> int:
        """Read this *before* looking at the database; pass it to :meth:`wait` after."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    def notify(self) -> None:
        """Something committed: wake every waiter."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until a write after generation ``seen`` (or ``timeout`` seconds, or close);
        answers the generation now."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen or self._closed, timeout)
            return self._generation

    def close(self) -> None:
        """The server is stopping: wake every waiter for good (streams end)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
