"""What every backend shares: connections, transactions and error translation.

Queries live in the repositories and are written once; a backend only decides how to make the
engine, how to set up a connection, how to begin reads and writes, and the odd statement whose
SQL differs between dialects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from ..clock import utcnow
from ..errors import ConflictError, LobstoreError, StorageError
from ..notify import CHANGED, ChangeSignal
from ..work import waiting

log = logging.getLogger(__name__)


class SqlBackend:
    """A database reached through a SQLAlchemy Engine."""

    name = "sql"
    # Whether a transaction's generated ids become visible in id order. SQLite's single writer
    # guarantees it; on PostgreSQL id 11 can commit before id 10 (feed followers look back).
    commits_in_id_order = False

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._shown_url: str | None = None  # when the engine's URL is not the one the user gave
        self._prepared: dict[sa.Select[Any], _Prepared] = {}  # select_prepared's compiled statements
        # Told how long each write waited for its transaction to begin (the metrics, if any).
        self.on_write_wait: Callable[[float], None] | None = None
        self.changes = ChangeSignal(self)  # wakes followers after a commit that changed the feed

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: URL, *, read_only: bool = False, **options: Any) -> SqlBackend:
        raise NotImplementedError

    @classmethod
    def from_engine(cls, engine: sa.Engine, **options: Any) -> SqlBackend:
        return cls(engine, **options)

    @property
    def url(self) -> str:
        """The URL with any password hidden, for logs and /health."""
        return self._shown_url or self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.changes.close()
        self.engine.dispose()

    # -- transactions -------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection in a write transaction: committed on a clean exit, rolled back otherwise.

        The wait for the writer lock and the commit (the disk's flush, the server's answer) are
        waits, not work: a request serving in a work slot (lobstore/work.py) gives its slot
        back for them."""
        if self.in_write():
            # A second writer in the same thread would wait on the first for ever.
            raise nested_in_write("write")
        asked = time.perf_counter()
        changed = False
        with self.translate_errors(), ExitStack() as held:
            with waiting(then_first=True):
                # The wait for the writer lock: SQLite's lock in this process and BEGIN
                # IMMEDIATE across processes; on PostgreSQL only the pool (row locks are waited
                # for later, inside the transaction).
                held.enter_context(self._exclusive())
                self._local.writing = True
                held.callback(setattr, self._local, "writing", False)
                conn = held.enter_context(self.engine.connect())
                self._prepare_write(conn)
                held.callback(conn.info.pop, CHANGED, None)
                transaction = conn.begin()
            if self.on_write_wait is not None:
                self.on_write_wait(time.perf_counter() - asked)
            try:
                yield conn
                changed = bool(conn.info.get(CHANGED))
            except BaseException:
                transaction.rollback()
                raise
            with waiting():
                transaction.commit()
                held.close()  # the writer lock goes before this thread queues for its turn again
        if changed:
            self.changes.committed()  # waiters here look now; other replicas are told

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection in a read transaction: one consistent snapshot for the block."""
        with self.translate_errors(), self._shared():
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn

    def select_raw(self, statement: sa.Executable, params: dict[str, Any] | None = None) -> RawRows:
        """One SELECT's column names and rows as the driver hands them back, without
        SQLAlchemy's per-row processing: for the hot read routes, whose rows go straight to
        JSON (repositories/task_json.py). A single statement needs no transaction of its own
        (each statement sees one snapshot), so backends may skip BEGIN (:meth:`_single_read`)."""
        with self.translate_errors(), self._shared():
            with self.engine.connect() as conn:
                self._single_read(conn)
                return fetch_raw(conn, statement, params)

    def select_prepared(self, statement: sa.Select[Any], params: dict[str, Any]) -> RawRows:
        """:meth:`select_raw` for a statement built once (a module constant, as the task-by-id
        query is): compiled once per backend and run on the driver's connection, past
        SQLAlchemy's execution machinery (reading one task: 75 µs there, 10 µs here)."""
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = self._prepared[statement] = _Prepared(statement, self.engine.dialect)
        with self.translate_errors(), self._shared(), driver_errors(self.engine.dialect, prepared.sql):
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(prepared.sql, prepared.arguments(params))
                    return tuple(column[0] for column in cursor.description), cursor.fetchall()
                finally:
                    cursor.close()
            finally:
                raw.close()  # back to the pool, which ends the driver's transaction if one began

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction in which every statement sees the same committed data, however
        long it lasts and whatever writers do meanwhile: for copies, backups and checksums."""
        with self.translate_errors(), self._shared():
            with self.engine.connect() as conn:
                conn = conn.execution_options(**self._snapshot_options())
                with conn.begin():
                    yield conn

    def _snapshot_options(self) -> dict[str, Any]:
        """Hook: the execution options of a snapshot (SQLite's read transactions already are)."""
        return {}

    # -- ids that commit out of order (the feed's followers) -------------------------------
    def open_writes(self, conn: Connection) -> Any:
        """A marker of the write transactions open now (None where ids commit in order)."""
        return None

    def writes_finished(self, conn: Connection, marker: Any) -> bool:
        """Whether every write transaction open at ``marker`` has committed or rolled back."""
        return True

    def in_write(self) -> bool:
        """Whether this thread has a write transaction open on this backend."""
        return getattr(self._local, "writing", False)

    def _prepare_write(self, conn: Connection) -> None:
        """Hook: mark a connection as a writer before its transaction begins."""

    def _single_read(self, conn: Connection) -> None:
        """Hook: mark a connection that runs one SELECT and nothing else."""

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hook: serialise writers. The base lets the database do it."""
        yield

    @contextmanager
    def _shared(self) -> Iterator[None]:
        """Hook: anything readers must hold. The base needs nothing."""
        yield

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn driver exceptions into lobstore errors at the edge of the backend."""
        try:
            yield
        except LobstoreError:
            raise
        except sa.exc.IntegrityError as exc:
            raise ConflictError(f"the write conflicts with data already stored: {_reason(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            # Not logged here: the StorageError carries the reason to whoever reports it (the
            # HTTP adapter logs it with its traceback, the CLI prints one line, -v the traceback).
            log.debug("database error", exc_info=True)
            reason = _reason(exc)
            if reason.startswith(_CONNECT_FAILURES):
                reason = reason.removeprefix(_CONNECT_FAILURES[0]).strip()
                raise StorageError(f"cannot connect to the database {self.url}: {reason}") from exc
            raise StorageError(f"the database ({self.name}) failed: {reason}") from exc

    # -- dialect-specific statements -------------------------------------------------------
    def execute_script(self, conn: Connection, sql: str) -> None:
        """Run a migration file's statements inside the current transaction."""
        raise NotImplementedError

    def json_list_contains(self, column: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
        """True where a JSON list column holds ``value``."""
        raise NotImplementedError

    def now_column(self) -> sa.ColumnElement[Any] | None:
        """The database's clock as a column to read beside a row (None: use database_now)."""
        return None

    def database_now(self, conn: Connection) -> datetime:
        """The database's clock (the lifecycle clock decides by it, whatever the writers' clocks
        say). An embedded SQLite database shares this process's clock: no query needed."""
        return utcnow()

    def insert_many(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> list[int]:
        """Insert many rows in one go; their generated ids, in the order of ``rows``."""
        statement = _RETURNING_IDS.get(table)
        if statement is None:
            (key,) = table.primary_key.columns
            statement = _RETURNING_IDS[table] = sa.insert(table).returning(key, sort_by_parameter_order=True)
        return list(conn.execute(statement, rows).scalars())

    def accumulate(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Add each row's numbers to the row with the same primary key, creating it if new
        (an upsert: INSERT ... ON CONFLICT DO UPDATE, spelled alike by SQLite and PostgreSQL)."""
        if not rows:
            return
        keys = [column.name for column in table.primary_key.columns]
        statement = self._dialect_insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: table.c[name] + statement.excluded[name] for name in rows[0] if name not in keys},
        )
        for row in rows:
            conn.execute(statement, row)

    def accumulate_returning(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]], *,
                             add: tuple[str, ...]) -> list[Any]:
        """Insert each row, or add its ``add`` columns to the row with the same primary key
        (the others are kept); each row as it is after, locked until the transaction ends on
        PostgreSQL."""
        key = (type(self), table, add)  # the dialect's construct
        statement = _ACCUMULATE_RETURNING.get(key)
        if statement is None:  # built once: compiled once, served from SQLAlchemy's cache
            statement = _ACCUMULATE_RETURNING[key] = self._adding(self._dialect_insert(table), table, add)
        return [conn.execute(statement, row).one() for row in rows]

    def accumulate_from_select(self, conn: Connection, table: sa.Table, select: sa.Select[Any],
                               params: dict[str, Any], *, add: tuple[str, ...]) -> list[Any]:
        """:meth:`accumulate_returning` of the rows ``select`` makes (its columns in the
        table's order): one statement, however many rows."""
        key = (type(self), select, add)
        statement = _ACCUMULATE_RETURNING.get(key)
        if statement is None:
            insert = self._dialect_insert(table).from_select([c.name for c in table.columns], select)
            statement = _ACCUMULATE_RETURNING[key] = self._adding(insert, table, add)
        return conn.execute(statement, params).all()

    @staticmethod
    def _adding(insert: Any, table: sa.Table, add: tuple[str, ...]) -> Any:
        keys = [column.name for column in table.primary_key.columns]
        return insert.on_conflict_do_update(
            index_elements=keys, set_={name: table.c[name] + insert.excluded[name] for name in add},
        ).returning(*table.columns)

    def upsert(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> None:
        """Insert ``values``, or replace the other columns of the row with the same primary key."""
        keys = [column.name for column in table.primary_key.columns]
        statement = self._dialect_insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={name: statement.excluded[name] for name in values if name not in keys},
        )
        conn.execute(statement, values)

    def _dialect_insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct (it carries on_conflict_do_update)."""
        raise NotImplementedError

    def day_bucket(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """The UTC calendar day of a timestamp column as ``YYYY-MM-DD`` text (to group by day)."""
        raise NotImplementedError

    def insert_if_absent(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert a row unless it collides with a unique key; True if it was inserted.

        A collision with a row another transaction has not committed yet waits for that
        transaction to end (PostgreSQL), which is what makes a concurrent repeat wait its turn.
        RETURNING says whether a row went in (row counts of ON CONFLICT DO NOTHING are not
        reliable on every driver).
        """
        statement = self._dialect_insert(table).values(values).on_conflict_do_nothing().returning(sa.literal(1))
        return conn.execute(statement).first() is not None

    def reset_sequences(self, conn: Connection, tables: list[sa.Table]) -> None:
        """After rows were inserted with explicit ids: make the next generated id follow them."""

    def size_bytes(self) -> int | None:
        """How much space the database takes (None when it cannot be told)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "url": self.url}


_RETURNING_IDS: dict[sa.Table, sa.Insert] = {}  # built once per table: compiled once
_ACCUMULATE_RETURNING: dict[tuple[type, Any, tuple[str, ...]], Any] = {}


def nested_in_write(what: str) -> LobstoreError:
    return LobstoreError(
        f"a write transaction is already open in this thread: inside `with store.transaction() as tx`, "
        f"use tx.tasks / tx.events (and the other tx repositories) to {what}, not store.tasks"
    )


# How drivers begin the message of a connection that could not be made (psycopg, sqlite3).
_CONNECT_FAILURES = ("connection failed:", "unable to open database file")


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


RawRows = tuple[tuple[str, ...], list[tuple[Any, ...]]]  # column names, rows as the driver gives them


def fetch_raw(conn: Connection, statement: sa.Executable, params: dict[str, Any] | None = None) -> RawRows:
    """Run ``statement`` (compiled once, from SQLAlchemy's cache) and fetch its rows from the
    driver's cursor: names and plain tuples, none of SQLAlchemy's per-row work (a list of 50
    tasks spent half its time there). Values come as the driver reads them: SQLite's text for
    timestamps and JSON, PostgreSQL's already typed."""
    result = conn.execute(statement, params or {})
    try:
        with driver_errors(conn.dialect, None):
            return tuple(result.keys()), result.cursor.fetchall()
    finally:
        result.close()


@contextmanager
def driver_errors(dialect: sa.Dialect, sql: str | None) -> Iterator[None]:
    """The driver's own exceptions (raised where SQLAlchemy does not wrap them) as SQLAlchemy's,
    which ``translate_errors`` turns into lobstore errors."""
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc


class _Prepared:
    """A statement compiled once for a dialect: its SQL and how to order its parameters."""

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positiontup is not None
        self.names: tuple[str, ...] = tuple(compiled.positiontup or compiled.binds)
        # The statement's own values (literals), which the caller's parameters join.
        self.fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        # The parameters' own conversions (none for the ids and texts read this way today).
        self.convert = {name: processor for name in self.names
                        if (processor := compiled.binds[name].type.bind_processor(dialect)) is not None}

    def arguments(self, params: dict[str, Any]) -> Any:
        values = {**self.fixed, **params}
        for name, convert in self.convert.items():
            values[name] = convert(values[name])
        return tuple(values[name] for name in self.names) if self.positional else values
