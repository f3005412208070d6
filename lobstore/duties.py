"""Duties: work that one process per database must do, however many `lobstore serve` run.

A *duty* is a named lock on the database: the process that holds it does the work (runs the
cron schedule; later the vault sync, the expiry sweep, ...), the others stand by and take over
when the holder ends. :func:`duty_for` picks the lock that fits the store:

- **PostgreSQL**: a session-level advisory lock, keyed from the database, schema and duty
  name, held on a connection of its own (not from the pool, so no transaction or pool
  recycling can drop it). PostgreSQL frees the lock when that session ends — at once when the
  holding process dies, after the server's TCP keep-alive timeouts on a network failure — and
  a standby takes it on its next try. ``pg_stat_activity.application_name`` shows the holder.
- **SQLite file**: ``flock`` on ``<database>.<duty>.lock`` next to the database file (the lock
  goes with the process that holds it, whatever way it ends). The file names the holder, so a
  second process can say who runs the duty.
- **SQLite in memory**: the database lives inside one process; the duty is a lock in it.

The contract every duty keeps (:class:`Duty`):

- ``try_acquire()`` never waits: True if this process holds the duty now (already, or just
  took it), False if another does or the database cannot be reached.
- ``held()`` checks that the duty is still this process's (a PostgreSQL connection can drop):
  do the work only after it answers True, and stop when it answers False.
- ``release()`` lets it go (on shutdown), so a standby takes over at once.

A background service guards its passes with a :class:`DutyGate`, which logs the changes a
person wants to see (standing by and why, taking over, losing the duty)::

    gate = DutyGate(duty_for(store, "vault-sync"), "the vault sync")
    def run_pass(self):
        if gate.poll() in (DutyState.ACQUIRED, DutyState.HELD):
            ...the work...

Call ``poll()`` at least once per pass interval: that interval is how soon a standby takes over.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import socket
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .clock import to_iso, utcnow

log = logging.getLogger(__name__)


def identity() -> str:
    """This process, as other processes name it: ``pid 123 on host``."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


class Duty(ABC):
    kind = "duty"

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()  # the scheduler's thread and the stopping thread share it

    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the duty if it is free; True if this process holds it now."""

    @abstractmethod
    def held(self) -> bool:
        """Whether this process still holds the duty (checked, not remembered)."""

    @abstractmethod
    def release(self) -> None:
        """Let the duty go (nothing happens if it is not held)."""

    def holder(self) -> str | None:
        """Who holds the duty, when that can be known (for logs)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"duty": self.name, "lock": self.kind}


class LocalDuty(Duty):
    """A duty within one process: for an in-memory store, which no other process can open."""

    kind = "process"
    # Per database (the store's backend), the duty objects holding each name; forgotten with it.
    _taken: weakref.WeakKeyDictionary[object, dict[str, LocalDuty]] = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self, name: str, scope: object) -> None:
        super().__init__(name)
        self._scope = weakref.ref(scope)

    def try_acquire(self) -> bool:
        with self._registry_lock:
            holders = self._holders()
            return holders is not None and holders.setdefault(self.name, self) is self

    def held(self) -> bool:
        with self._registry_lock:
            holders = self._holders()
            return holders is not None and holders.get(self.name) is self

    def release(self) -> None:
        with self._registry_lock:
            holders = self._holders()
            if holders is not None and holders.get(self.name) is self:
                del holders[self.name]

    def holder(self) -> str | None:
        return "another scheduler in this process"

    def _holders(self) -> dict[str, LocalDuty] | None:
        scope = self._scope()
        return None if scope is None else self._taken.setdefault(scope, {})


class FileDuty(Duty):
    """``flock`` on a file next to a SQLite database."""

    kind = "file"

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        with self._lock:
            if self._fd is not None:
                return self._still_held()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: someone else holds it
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, f"{identity()} since {to_iso(utcnow())}\n".encode())
            self._fd = fd
            return True

    def held(self) -> bool:
        with self._lock:
            return self._fd is not None and self._still_held()

    def release(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)  # closing the last descriptor drops the flock
                self._fd = None

    def holder(self) -> str | None:
        try:
            return self.path.read_text(errors="replace").strip() or None
        except OSError:
            return None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path)}

    def _still_held(self) -> bool:
        # A lock file someone deleted or replaced guards nothing: another process can lock the
        # new file. Give the duty up rather than run it twice.
        assert self._fd is not None
        try:
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            log.error("the lock file %s was removed or replaced: giving up duty %r", self.path, self.name)
            os.close(self._fd)
            self._fd = None
        return same


class AdvisoryLockDuty(Duty):
    """A PostgreSQL session advisory lock on a connection of its own."""

    kind = "postgresql advisory lock"

    def __init__(self, name: str, url: sa.URL) -> None:
        super().__init__(name)
        self._engine = sa.create_engine(
            url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
            connect_args={
                "application_name": f"lobstore {name} duty, {identity()}"[:63],
                "connect_timeout": 10,
                # Find out soon when the server is gone, so a lost duty is noticed.
                "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
            },
        )
        self._conn: sa.Connection | None = None
        self._key: int | None = None
        self._held = False
        self._warned = False

    def try_acquire(self) -> bool:
        with self._lock:
            if self._held:
                return self._check()
            try:
                conn = self._connection()
                self._held = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar())
            except sa.exc.SQLAlchemyError as exc:
                self._drop(f"cannot reach PostgreSQL to take duty {self.name!r}: {_reason(exc)}")
                return False
            self._warned = False
            return self._held

    def held(self) -> bool:
        with self._lock:
            return self._held and self._check()

    def release(self) -> None:
        with self._lock:
            if self._held and self._conn is not None:
                try:
                    self._conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                except sa.exc.SQLAlchemyError:
                    pass  # the connection is closing anyway, and with it the lock
            self._held = False
            self._close()
        self._engine.dispose()

    def holder(self) -> str | None:
        with self._lock:
            try:
                conn = self._connection()
                row = conn.execute(sa.text(
                    "SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid = :high AND l.objid = :low"),
                    {"high": (self._key >> 32) & 0xFFFFFFFF, "low": self._key & 0xFFFFFFFF},
                ).first()
            except sa.exc.SQLAlchemyError:
                return None
        if row is None:
            return None
        name, address, pid = row
        return f"{name or 'a session'} (server pid {pid}{f', from {address}' if address else ''})"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "key": self._key}

    # -- the connection ------------------------------------------------------------------------
    def _connection(self) -> sa.Connection:
        if self._conn is None:
            conn = self._engine.connect()
            self._key = advisory_key(conn, "duty", self.name)
            self._conn = conn
        return self._conn

    def _check(self) -> bool:
        try:
            assert self._conn is not None
            self._conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError as exc:
            self._drop(f"the connection holding duty {self.name!r} failed: {_reason(exc)}")
            return False

    def _drop(self, message: str) -> None:
        if self._held or not self._warned:
            log.warning("%s", message)
            self._warned = True
        self._held = False
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                pass
            self._conn = None


def advisory_key(conn: sa.Connection, kind: str, name: str) -> int:
    """The advisory lock key of the ``kind`` (duty, lock) ``name`` in the database and schema
    ``conn`` is on: two stores in one database (two schemas) do not collide."""
    database, schema = conn.execute(sa.text("SELECT current_database(), current_schema()")).one()
    digest = hashlib.sha256(f"lobstore {kind} {database}.{schema}.{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def exclusive(backend: Any, name: str) -> Iterator[None]:
    """Run the block while no other process runs one under ``name`` on this database: waits for
    a PostgreSQL session advisory lock (freed by the server if this process dies). SQLite needs
    none: its writers take the file's lock in turn, and the block re-checks under it."""
    if backend.name != "postgresql":
        yield
        return
    with backend.translate_errors(), backend.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        key = advisory_key(conn, "lock", name)
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            log.info("another process holds the %s lock on this database; waiting for it", name)
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def duty_for(store: Any, name: str) -> Duty:
    """The duty lock called ``name`` for ``store``'s database (see the module doc)."""
    backend = store.backend
    if backend.name == "postgresql":
        return AdvisoryLockDuty(name, backend.engine.url)
    if getattr(backend, "memory", False):
        return LocalDuty(name, backend)
    database = Path(backend.engine.url.database or "").resolve()
    return FileDuty(name, database.with_name(f"{database.name}.{name}.lock"))


class DutyState(enum.Enum):
    ACQUIRED = "acquired"  # this process just took the duty (do any taking-over work now)
    HELD = "held"  # this process still holds it
    STANDBY = "standby"  # another process holds it
    LOST = "lost"  # this process held it and no longer does: stop the work


class DutyGate:
    """Polls a duty before each pass of work and logs its changes once each."""

    def __init__(self, duty: Duty, what: str) -> None:
        self.duty = duty
        self.what = what
        self.holding = False
        self.polled = False  # until the first poll, nobody knows who holds it
        self._standby_reported = False

    def poll(self) -> DutyState:
        try:
            return self._poll()
        finally:
            self.polled = True  # after the answer: while a first try is under way, nobody knows

    def _poll(self) -> DutyState:
        if self.holding:
            if self.duty.held():
                return DutyState.HELD
            self.holding = False
            log.error("%s: this process lost duty %r; stopping it until the duty is taken again", self.what, self.duty.name)
            return DutyState.LOST
        if self.duty.try_acquire():
            self.holding = True
            took = "taking over" if self._standby_reported else "running"
            log.info("%s: %s here (%s, duty %r)", self.what, took, identity(), self.duty.name)
            self._standby_reported = False
            return DutyState.ACQUIRED
        if not self._standby_reported:
            holder = self.duty.holder() or "another process"
            log.warning("%s: %s runs it already (duty %r, %s); this process stands by and takes over "
                        "if that one ends", self.what, holder, self.duty.name, self.duty.kind)
            self._standby_reported = True
        return DutyState.STANDBY

    def release(self) -> None:
        if self.holding:
            log.info("%s: releasing duty %r", self.what, self.duty.name)
        self.holding = False
        self.duty.release()


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
