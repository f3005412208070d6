"""Row counts and content checksums of a store: what a backup promises and a restore proves.

A table's checksum is the sum (mod 2**256) of the SHA-256 of each row, so it needs no ORDER BY
and does not depend on the order a backend returns rows in (text keys sort differently under
PostgreSQL's collations than under SQLite). Each row is hashed from its typed values as
SQLAlchemy reads them through ``schema.py`` (aware UTC datetimes, parsed JSON with sorted keys),
so the same data gives the same checksum on SQLite and on PostgreSQL: a backup taken from one
can be verified after a restore into the other.

``schema_version`` is left out: a restore into a new database writes its own rows there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..schema import metadata, schema_version

BATCH_ROWS = 5000
_MODULUS = 1 << 256
Progress = Callable[[str, int], None]  # table, rows read so far


@dataclass(frozen=True)
class TableDigest:
    rows: int
    sha256: str | None  # None: counted only

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "sha256": self.sha256}


def data_tables() -> list[sa.Table]:
    """Every table but the schema bookkeeping, parents before children."""
    return [t for t in metadata.sorted_tables if t is not schema_version]


def digest_tables(conn: sa.Connection, progress: Progress | None = None) -> dict[str, TableDigest]:
    """Count and checksum every data table, reading through ``conn`` (use a snapshot: a
    backup's checksum must describe one moment)."""
    return {table.name: digest_table(conn, table, progress) for table in data_tables()}


def digest_table(conn: sa.Connection, table: sa.Table, progress: Progress | None = None) -> TableDigest:
    total, rows = 0, 0
    result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(sa.select(table))
    for batch in result.partitions(BATCH_ROWS):
        for row in batch:
            encoded = json.dumps(list(row), default=_plain, sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False)
            total += int.from_bytes(hashlib.sha256(encoded.encode("utf-8")).digest(), "big")
        rows += len(batch)
        if progress:
            progress(table.name, rows)
    return TableDigest(rows=rows, sha256=f"{total % _MODULUS:064x}")


def count_tables(conn: sa.Connection) -> dict[str, TableDigest]:
    """Row counts (no checksums) of the tables the database holds, whatever its schema version:
    for a database older than this code, whose tables ``schema.py`` does not describe."""
    names = [name for name in sa.inspect(conn).get_table_names() if name != schema_version.name]
    return {
        name: TableDigest(rows=conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one(),
                          sha256=None)
        for name in sorted(names)
    }


def combined_checksum(digests: Mapping[str, TableDigest]) -> str:
    """One checksum for the whole store (table names, counts and checksums)."""
    text = "\n".join(f"{name} {d.rows} {d.sha256}" for name, d in sorted(digests.items()))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def differences(expected: Mapping[str, TableDigest], actual: Mapping[str, TableDigest]) -> list[str]:
    """What differs, table by table, in words (empty when everything matches)."""
    found = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want is None or got is None:
            found.append(f"{name}: present on one side only")
        elif want.rows != got.rows:
            found.append(f"{name}: {got.rows:,} rows, expected {want.rows:,}")
        elif want.sha256 is not None and got.sha256 is not None and want.sha256 != got.sha256:
            found.append(f"{name}: same {got.rows:,} rows but different content")
    return found


def digests_from_dict(data: Mapping[str, Mapping[str, Any]]) -> dict[str, TableDigest]:
    return {name: TableDigest(rows=int(d["rows"]), sha256=d.get("sha256")) for name, d in data.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"cannot checksum a value of type {type(value).__name__}")
