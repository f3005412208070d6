"""Change notification: wake this process's waiters when any replica commits a change.

Every backend has one :class:`ChangeSignal` (``store.changes``). A write that changes what
followers watch (an event in the feed) marks its transaction with :func:`mark_changed`; the
backend then announces it:

- **PostgreSQL**: after the commit, a thread of this process sends ``pg_notify`` on a
  connection of its own; changes committed while one is on its way make one more, not one
  each. Not inside the write: PostgreSQL serialises the commits of notifying transactions
  (a database-wide lock held through the commit's flush), which halved the creates per
  second (bench/bench_replicas.py). One thread per process listens (``LISTEN``) on a connection
  of its own (started by the first ``wait`` or ``subscribe``) and wakes the waiters of every
  replica. A process killed between its commit and its NOTIFY loses that wake-up: waiters
  read again at their own timeout.
- **SQLite**: after the commit, the waiters in this process wake at once. Other processes on
  the same file (``lobstore tasks``, a cron script) cannot signal: waiters poll.

Waiters never depend on the signal alone. :meth:`ChangeSignal.wait` returns True when a change
may have been made (announced, or the signal cannot hear every process right now and
``fallback_poll`` seconds passed: a SQLite file, a listening connection that dropped and is
being re-made), False when ``timeout`` passed quietly. Read the feed after either, from your
cursor::

    seen = store.changes.generation
    while True:
        for event in store.events.feed(after=cursor): ...
        store.changes.wait(15.0, since=seen)
        seen = store.changes.generation

``subscribe(callback)`` calls ``callback()`` on every change instead (keep it short: it runs on
the announcing thread), e.g. a background service's ``wake``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from .threads import background_thread

log = logging.getLogger(__name__)

CHANGED = "lobstore.changed"  # the mark in a connection's info: this transaction changed the feed
DEFAULT_FALLBACK_POLL = 1.0  # seconds between looks when the signal cannot hear every process
RECONNECT = 2.0  # seconds between tries to re-make a dropped listening connection
LISTEN_TICK = 1.0  # how often the listening thread looks up from the socket (to stop)


def mark_changed(conn: sa.Connection) -> None:
    """Say that the open write transaction on ``conn`` changes what followers watch."""
    conn.info[CHANGED] = True


class ChangeSignal:
    """One process's view of "something changed" (see the module doc)."""

    def __init__(self, backend: Any, *, fallback_poll: float = DEFAULT_FALLBACK_POLL) -> None:
        self._backend = backend
        self.fallback_poll = fallback_poll
        self._cond = threading.Condition()
        self._generation = 0
        self._callbacks: list[Callable[[], None]] = []
        self._channel: str | None = None
        self._listener: _Listener | None = None
        self._sender: _Sender | None = None
        self._closed = False

    # -- writers (the backend) -------------------------------------------------------------------
    def committed(self) -> None:
        """A write that changed the feed committed in this process: wake the waiters here, and
        (PostgreSQL) have the other replicas told."""
        self.notify()
        if self._backend.name == "postgresql":
            with self._cond:
                if self._closed:
                    return
                if self._sender is None:
                    self._sender = _Sender(self)
                    self._sender.start()
                sender = self._sender
            sender.pending.set()

    def notify(self) -> None:
        """A change committed (in this process, or heard from another): wake every waiter."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one subscriber must not keep the others asleep
                log.exception("a change subscriber failed")

    # -- waiters ---------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """A counter of changes heard: pass it to :meth:`wait` as ``since`` to miss none."""
        with self._cond:
            return self._generation

    @property
    def hears_all(self) -> bool:
        """Whether every committed change, from any process, wakes the waiters now."""
        if self._backend.name == "postgresql":
            self._listen()
            return self._listener is not None and self._listener.listening.is_set()
        return bool(getattr(self._backend, "memory", False))  # nobody else can open it

    def wait(self, timeout: float, since: int | None = None) -> bool:
        """Until a change after ``since`` (default: now) or ``timeout`` seconds; True when the
        caller should look (see the module doc)."""
        deadline = time.monotonic() + timeout
        polling = not self.hears_all
        if polling:
            deadline = min(deadline, time.monotonic() + self.fallback_poll)
        with self._cond:
            start = self._generation if since is None else since
            while self._generation == start and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return polling
                self._cond.wait(remaining)
            return True

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on every change; returns the function that unsubscribes."""
        self._listen()
        with self._cond:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def status(self) -> dict[str, Any]:
        """For /health: how changes reach this process."""
        if self._backend.name != "postgresql":
            return {"via": "in-process" if self.hears_all else "in-process; other processes polled",
                    "listening": False}
        listening = self._listener is not None and self._listener.listening.is_set()
        return {"via": "LISTEN/NOTIFY" if listening else "polling", "listening": listening}

    @property
    def closed(self) -> bool:
        """Closed (the server stops, the store closes): waits return at once, streams end."""
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()  # waiters (event streams, long polls) return now
            listener, self._listener = self._listener, None
            sender, self._sender = self._sender, None
        for thread in (listener, sender):
            if thread is not None:
                thread.stop()

    # -- the PostgreSQL side ---------------------------------------------------------------------
    def channel(self, conn: sa.Connection) -> str:
        """The channel of this database's schema (two stores in one database do not mix)."""
        if self._channel is None:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar() or "public"
            self._channel = "lobstore_changes_" + hashlib.sha256(schema.encode()).hexdigest()[:16]
        return self._channel

    def _listen(self) -> None:
        if self._backend.name != "postgresql":
            return
        with self._cond:
            if self._listener is None and not self._closed:
                self._listener = _Listener(self)
                self._listener.start()


class _ConnectionThread:
    """A thread with a PostgreSQL connection of its own (made again when it drops)."""

    what = "thread"

    def __init__(self, signal: ChangeSignal) -> None:
        self.signal = signal
        self._stop = threading.Event()
        self._engine = sa.create_engine(
            signal._backend.engine.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
            connect_args={"application_name": f"lobstore change {self.what}", "connect_timeout": 10,
                          "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3},
        )
        self._thread = background_thread(self._run, name=f"lobstore-change-{self.what}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(LISTEN_TICK + 5)
        self._engine.dispose()

    def _wake(self) -> None:
        """Make the thread look at its stop flag now."""

    def _run(self) -> None:
        raise NotImplementedError


class _Sender(_ConnectionThread):
    """The thread that sends this process's NOTIFYs: one per burst of commits."""

    what = "sender"

    def __init__(self, signal: ChangeSignal) -> None:
        self.pending = threading.Event()
        super().__init__(signal)

    def _wake(self) -> None:
        self.pending.set()

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            try:
                with self._engine.connect() as conn:
                    # A notification is a wake-up, not data: its commit need not wait for a flush.
                    conn.exec_driver_sql("SET synchronous_commit = off")
                    statement = sa.text("SELECT pg_notify(:channel, '')")
                    channel = {"channel": self.signal.channel(conn)}
                    warned = False
                    while not self._stop.is_set():
                        self.pending.wait()
                        self.pending.clear()
                        if not self._stop.is_set():
                            conn.execute(statement, channel)
            except Exception as exc:  # noqa: BLE001 - tell the others later; they poll meanwhile
                if not warned:
                    log.warning("change notification: cannot send NOTIFY (%s); other replicas see changes "
                                "at their next poll", _first_line(exc))
                    warned = True
                self.pending.set()  # what was pending is still to be sent
                self._stop.wait(RECONNECT)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class _Listener(_ConnectionThread):
    """The thread that LISTENs on a connection of its own and re-makes it when it drops."""

    what = "listener"

    def __init__(self, signal: ChangeSignal) -> None:
        self.listening = threading.Event()
        self._conn: sa.Connection | None = None
        super().__init__(signal)

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            try:
                with self._engine.connect() as conn:
                    self._conn = conn
                    channel = self.signal.channel(conn)
                    conn.exec_driver_sql(f'LISTEN "{channel}"')
                    self.listening.set()
                    if warned:
                        log.info("change notification: listening again; waiters wake at once")
                    warned = False
                    self.signal.notify()  # changes made while not listening: look once
                    raw = conn.connection.dbapi_connection
                    while not self._stop.is_set():
                        for _ in raw.notifies(timeout=LISTEN_TICK):
                            self.signal.notify()
            except Exception as exc:  # noqa: BLE001 - any failure: poll, and listen again soon
                if self._stop.is_set():
                    break
                if not warned:
                    log.warning("change notification: the listening connection failed (%s); waiters poll every "
                                "%g s until it is back", _first_line(exc), self.signal.fallback_poll)
                    warned = True
            finally:
                self.listening.clear()
                self._conn = None
            self._stop.wait(RECONNECT)

    def drop(self) -> None:
        """Close the listening connection under the thread (tests: what a network failure does)."""
        conn = self._conn
        if conn is not None:
            conn.connection.dbapi_connection.close()
