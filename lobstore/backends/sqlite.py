"""SQLite: the default backend. One file, WAL journal, one writer at a time, many readers.

Durability: ``synchronous=FULL``. In WAL mode NORMAL is faster but a commit acknowledged just
before a power cut can be lost; lobstore promises that an acknowledged write survives a crash,
so every commit waits for the WAL to reach the disk.

Writers are serialised twice: a lock in this process (threads queue in Python instead of
spinning in SQLite's busy handler) and ``BEGIN IMMEDIATE`` (another process writing the same
file makes us wait, up to the busy timeout, at the start of the transaction rather than fail
at its end with "database is locked"). Writers of a file database that queue behind each other
share one commit, each in a savepoint of its own (write_groups.py): one flush for many writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import QueuePool, StaticPool

from ..errors import ConfigurationError, MissingDatabaseError, StorageError
from ..jsoncodec import loads as json_loads
from ..work import holding, waiting
from ..notify import CHANGED
from .base import SqlBackend, driver_errors, nested_in_write
from .write_groups import WriteGroup, WriteGroups

BUSY_TIMEOUT_MS = 30_000
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
)
_WRITE_OPTION = "lobstore_write"
_SINGLE_READ_OPTION = "lobstore_single_read"
_INSERTS: dict[sa.Table, sa.Insert] = {}
_MEMBER = "lobstore_write"  # the savepoint of one writer's work in a group's transaction


def is_memory_url(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


class SQLiteBackend(SqlBackend):
    name = "sqlite"
    commits_in_id_order = True  # one writer at a time

    def __init__(self, engine: sa.Engine, *, read_only: bool = False, path: str | None = None) -> None:
        super().__init__(engine)
        # A read-only engine connects through a creator (engine.url is bare), so it names its file.
        self._path = path
        self.memory = path is None and is_memory_url(engine.url)
        self._write_lock = threading.Lock()
        self._writer: Connection | None = None  # the write transactions' connection (_write_connection)
        self._groups = WriteGroups()  # the writer lock of a file database, and group commit
        _install_connection_setup(engine, read_only=read_only)

    @classmethod
    def from_url(cls, url: URL, *, read_only: bool = False, **options: Any) -> SQLiteBackend:
        if read_only:
            engine, path = _read_only_engine(url)
            backend = cls(engine, read_only=True, path=path, **options)
            backend._shown_url = f"sqlite:///{path}"
            return backend
        if is_memory_url(url):
            # One connection shared by every thread of this store: a private in-memory
            # database that lives as long as the store. Access is serialised below.
            engine = sa.create_engine(
                "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False},
                json_deserializer=json_loads,
            )
        else:
            _check_folder(url.database or "")
            engine = sa.create_engine(
                url,
                poolclass=QueuePool,
                pool_size=16,
                max_overflow=48,
                connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
                json_deserializer=json_loads,
            )
        return cls(engine, **options)

    def _prepare_write(self, conn: Connection) -> None:
        conn.execution_options(**{_WRITE_OPTION: True})

    def _single_read(self, conn: Connection) -> None:
        # One SELECT in autocommit mode is its own read transaction: BEGIN and COMMIT around it
        # would be two more statements (a third of what reading one task costs).
        conn.execution_options(**{_SINGLE_READ_OPTION: True})

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._write_lock:
            yield

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction, committed on a clean exit and rolled back if the block raises.
        On a file database writers queued behind each other share one commit (write_groups.py)."""
        if self.memory:  # one connection for readers and writers alike: one writer at a time
            with super().writing() as conn:
                yield conn
            return
        if self.in_write():
            raise nested_in_write("write")
        asked = time.perf_counter()
        groups = self._groups
        with self.translate_errors():
            with waiting(then_first=True):  # the writer lock
                group = groups.join()
            # The writer lock is this thread's now: every path below hands the group on or ends it.
            own_error: BaseException | None = None
            changed = False
            try:
                conn, driver = self._enter_group(group, asked)
            except BaseException as exc:  # no BEGIN (another process held the file too long), no savepoint
                own_error = group.failed = exc
            else:
                try:
                    self._local.writing = True
                    try:
                        yield conn
                    finally:
                        self._local.writing = False
                        changed = bool(conn.info.pop(CHANGED, False))
                    with driver_errors(self.engine.dialect, None):
                        if not driver.in_transaction:
                            raise StorageError("SQLite ended the write transaction itself (a full disk, an I/O "
                                               "error): none of the group's work was kept")
                        driver.execute(f"RELEASE {_MEMBER}")
                except BaseException as exc:
                    own_error, changed = exc, False
                    try:  # this member's work goes; the others' stands
                        with driver_errors(self.engine.dialect, None):
                            driver.execute(f"ROLLBACK TO {_MEMBER}")
                            driver.execute(f"RELEASE {_MEMBER}")
                    except Exception as undo:  # noqa: BLE001 - the transaction is gone: the group fails
                        group.failed = undo
            if groups.pass_on(group):
                with waiting():
                    group.done.wait()
            else:
                with waiting():  # the commit waits for the disk
                    groups.finish(group, self._end_group(group))
            if own_error is not None:
                raise own_error
            if group.error is not None:
                raise StorageError(f"the write was not committed: {group.error}") from group.error
        if changed:
            self.changes.committed()  # waiters here look now; other replicas are told

    def _enter_group(self, group: WriteGroup, asked: float) -> tuple[Connection, Any]:
        """Begin the group's transaction if it is new, and this member's savepoint in it."""
        if group.transaction is None:
            with waiting(then_first=True):  # BEGIN IMMEDIATE waits for another process's writer
                conn = self._group_connection()
                self._prepare_write(conn)
                group.transaction = conn.begin()
        conn = self._writer
        if self.on_write_wait is not None:
            self.on_write_wait(time.perf_counter() - asked)
        driver = conn.connection.driver_connection
        with driver_errors(self.engine.dialect, None):
            driver.execute(f"SAVEPOINT {_MEMBER}")
        return conn, driver

    def _end_group(self, group: WriteGroup) -> BaseException | None:
        """Commit the group's transaction (roll it back if doomed); what went wrong, if anything."""
        conn = self._writer
        if group.transaction is None:  # it never began
            return group.failed
        try:
            if group.failed is not None:
                group.transaction.rollback()
                return group.failed
            group.transaction.commit()
            return None
        except BaseException as exc:
            # The commit (or rollback) failed: no member's work is kept. SQLite may still hold
            # the transaction open on the connection (a failed COMMIT does): it is thrown away,
            # which rolls back, and the next writer gets a new one.
            self._writer = None
            if conn is not None:
                conn.invalidate()
            return exc

    def _group_connection(self) -> Connection:
        """One connection for every write transaction of a file database, kept open: writers
        take turns under the writer lock anyway, and checking a connection out of the pool and
        back in cost a fifth of a small write's work. A connection that failed is replaced."""
        conn = self._writer
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._writer = self.engine.connect()
        return conn

    def close(self) -> None:
        if not self.memory:
            # In line with the writers: a group handed on to us is committed (its members are
            # waiting for that), then the kept connection goes.
            group, error = self._groups.join(), None
            try:
                error = self._end_group(group)
            finally:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                self._groups.finish(group, error)
        super().close()

    @contextmanager
    def _shared(self) -> Iterator[None]:
        # The in-memory store has one connection: readers take turns with writers, and a read
        # inside this thread's own open write would wait for itself for ever.
        if self.memory and self.in_write():
            raise nested_in_write("read")
        if self.memory:
            with holding(self._write_lock):  # its holder may be waiting without a work turn
                yield
        else:
            yield

    def backup_to(self, target: str, *, step_pages: int = 1024,
                  progress: Callable[[int, int], None] | None = None) -> None:
        """Copy the database into the new file ``target`` with SQLite's online backup API, as
        of one moment, while writers carry on.

        A file database is read through a connection of its own that holds one read
        transaction for the whole copy: in WAL mode that is a fixed snapshot which writers
        never wait for, and the backup does not restart when they commit (it would, step after
        step, without the open transaction). It copies ``step_pages`` pages per step
        (``progress(remaining, total)`` after each). The in-memory store has one connection
        shared with every writer, so it is copied under the write lock (tests and tools only).
        The copy is left in rollback-journal mode: one self-contained file.
        """
        destination = sqlite3.connect(target)
        try:
            if self.memory:
                with self._write_lock, self.engine.connect() as conn:
                    source = conn.connection.driver_connection
                    source.backup(destination, pages=step_pages, progress=_step(progress))
            else:
                source = sqlite3.connect(f"file:{quote(self.path or '')}?mode=ro", uri=True,
                                         timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                try:
                    source.execute("BEGIN")
                    source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
                    source.backup(destination, pages=step_pages, progress=_step(progress))
                    source.execute("COMMIT")
                finally:
                    source.close()
        except sqlite3.Error as exc:
            raise StorageError(f"the SQLite backup of {self.url} failed: {exc}") from exc
        finally:
            destination.close()
        self_contained(target)

    def execute_script(self, conn: Connection, sql: str) -> None:
        # sqlite3.executescript() would COMMIT first; run statement by statement instead,
        # splitting where SQLite itself says a statement is complete (triggers included).
        for statement in split_sqlite_script(sql):
            conn.exec_driver_sql(statement)

    # reset_sequences: nothing to do. With AUTOINCREMENT SQLite moves sqlite_sequence past
    # any id inserted explicitly.

    def json_list_contains(self, column: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
        items = sa.func.json_each(column).table_valued("value")
        return sa.exists(sa.select(sa.literal(1)).select_from(items).where(items.c.value == value))

    def insert_many(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> list[int]:
        # SQLAlchemy cannot batch INSERT ... RETURNING in parameter order on SQLite and falls
        # back to one statement per row. A plain executemany is many times faster, and its ids
        # are known: writers hold the database's one write lock (BEGIN IMMEDIATE) and
        # AUTOINCREMENT hands out max + 1 per row, so the batch got the ids up to the last one.
        statement = _INSERTS.get(table)
        if statement is None:
            statement = _INSERTS[table] = sa.insert(table)
        conn.execute(statement, rows)
        last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
        return list(range(last - len(rows) + 1, last + 1))

    def _dialect_insert(self, table: sa.Table) -> Any:
        return sqlite_insert(table)

    def day_bucket(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        # Timestamps are stored as naive UTC text 'YYYY-MM-DD HH:MM:SS...': the day is its head.
        return sa.func.substr(column, 1, 10)

    @property
    def path(self) -> str | None:
        """The database file (None for the in-memory store)."""
        if self.memory:
            return None
        return self._path or os.path.abspath(self.engine.url.database or "")

    def size_bytes(self) -> int | None:
        if self.memory:
            with self.reading() as conn:
                return int(conn.exec_driver_sql("PRAGMA page_count").scalar_one()
                           * conn.exec_driver_sql("PRAGMA page_size").scalar_one())
        # The file and its write-ahead log (which holds recent commits until a checkpoint).
        return sum(os.path.getsize(p) for p in (self.path or "", f"{self.path}-wal") if os.path.exists(p))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["path"] = None if self.memory else self.path
        return info


def self_contained(path: str) -> None:
    """Leave the SQLite file at ``path`` in rollback-journal mode, its WAL checkpointed into it:
    one file that can be moved or archived alone."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


def _step(progress: Callable[[int, int], None] | None) -> Callable[[int, int, int], None] | None:
    if progress is None:
        return None
    return lambda _status, remaining, total: progress(remaining, total)


def split_sqlite_script(sql: str) -> list[str]:
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _has_code(buffer):
        statements.append(buffer.strip())  # a last statement without ';' still runs
    return statements


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def _check_folder(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path)) if path else ""
    if folder and not os.path.isdir(folder):
        raise ConfigurationError(
            f"cannot create the SQLite database {path!r}: folder {folder!r} does not exist"
        )


def _read_only_engine(url: URL) -> tuple[sa.Engine, str]:
    """An engine on an existing file, opened read-only (``mode=ro``): nothing is created,
    migrated or changed. A missing file is a MissingDatabaseError."""
    if is_memory_url(url):
        raise MissingDatabaseError("an in-memory database (sqlite://) holds nothing to read: name a file")
    path = os.path.abspath(url.database or "")
    _check_folder(path)
    if not os.path.isfile(path):
        raise MissingDatabaseError(
            f"no SQLite database at {path} (nothing was created; `lobstore migrate` makes a new one)", path=path
        )
    uri = f"file:{quote(path)}?mode=ro"
    engine = sa.create_engine(
        "sqlite://",
        poolclass=QueuePool,
        pool_size=4,
        max_overflow=12,
        creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000),
    )
    return engine, path


def _install_connection_setup(engine: sa.Engine, *, read_only: bool = False) -> None:
    """Every new connection: our pragmas, and transactions begun by us, not by the driver."""
    # A read-only connection leaves the journal mode and durability as the file has them.
    pragmas = [p for p in PRAGMAS if not read_only or p.startswith(("PRAGMA foreign_keys", "PRAGMA busy"))]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(_SINGLE_READ_OPTION, False):
            return
        write = options.get(_WRITE_OPTION, False)
        # Through SQLAlchemy, not straight to the driver: a BEGIN that fails (the busy timeout
        # ran out) must become a lobstore error like any other statement's failure.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
