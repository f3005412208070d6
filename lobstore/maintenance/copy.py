"""Copy every table of one store into another: the road from SQLite to PostgreSQL.

Ids are kept, so ``T42`` stays ``T42``; the destination's sequences are moved past the highest
copied id, so the next task gets the next number. The whole copy is one transaction on the
destination: if anything fails, the destination is left empty and the command can simply be
run again. The source is only read (in one consistent snapshot), never changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from ..backends import SqlBackend, backend_for
from ..errors import ConflictError, LobstoreError, SchemaVersionError
from ..migrations import MigrationRunner
from .checksum import data_tables

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
Progress = Callable[[str, int, int], None]  # table, rows copied so far, rows in all


@dataclass(frozen=True)
class CopyResult:
    counts: dict[str, int]  # rows per table, verified equal on both sides
    source: str
    destination: str


def copy_store(source_url: str, destination_url: str, progress: Progress | None = None) -> CopyResult:
    source = backend_for(source_url, read_only=True)  # only read: never created or migrated
    try:
        destination = backend_for(destination_url)
    except BaseException:
        source.close()
        raise
    try:
        return copy_between(source, destination, progress)
    finally:
        source.close()
        destination.close()


def copy_between(source: SqlBackend, destination: SqlBackend, progress: Progress | None = None) -> CopyResult:
    """Copy every table of ``source`` (at this code's schema version; read in one snapshot)
    into ``destination`` (migrated here; it must hold no data), in one transaction there."""
    source_runner = MigrationRunner(source)
    version = source_runner.current_version()
    if version != source_runner.latest:
        raise SchemaVersionError(
            f"the source database is at schema version {version}, not {source_runner.latest}: "
            f"run `lobstore --db {source.url} migrate` first (copy never changes its source)"
        )
    MigrationRunner(destination).apply()
    tables = data_tables()
    counts: dict[str, int] = {}
    with source.snapshot() as src, destination.writing() as dst:
        _refuse_non_empty(dst, tables, destination.url)
        for table in reversed(tables):  # children first
            if table.info.get("seeded"):
                dst.execute(sa.delete(table))  # the migrations' seed rows: the source has its own
        for table in tables:
            counts[table.name] = _copy_table(src, dst, table, progress)
        destination.reset_sequences(dst, tables)
        _verify(dst, counts)
    return CopyResult(counts=counts, source=source.url, destination=destination.url)


def _refuse_non_empty(conn: sa.Connection, tables: list[sa.Table], url: str) -> None:
    held = {t.name: n for t in tables if not t.info.get("seeded") and (n := _count(conn, t))}
    if held:
        summary = ", ".join(f"{name}: {n:,} rows" for name, n in held.items())
        raise ConflictError(
            f"the destination {url} already holds data ({summary}); "
            "lobstore copy only fills an empty database — point it at a new one"
        )


def _copy_table(src: sa.Connection, dst: sa.Connection, table: sa.Table, progress: Progress | None) -> int:
    total = _count(src, table)
    done = 0
    if progress:
        progress(table.name, done, total)
    result = src.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(
        sa.select(table).order_by(*table.primary_key.columns)
    )
    insert = sa.insert(table)
    for batch in result.mappings().partitions(BATCH_ROWS):
        dst.execute(insert, [dict(row) for row in batch])
        done += len(batch)
        if progress:
            progress(table.name, done, total)
    return done


def _verify(dst: sa.Connection, counts: dict[str, int]) -> None:
    for table in data_tables():
        copied = _count(dst, table)
        if copied != counts[table.name]:
            raise LobstoreError(
                f"copy check failed: {table.name} has {copied} rows in the destination, "
                f"{counts[table.name]} in the source; nothing was committed"
            )


def _count(conn: sa.Connection, table: sa.Table) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
