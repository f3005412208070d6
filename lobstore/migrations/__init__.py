"""Schema migrations: plain SQL files per dialect, applied in order, each in one transaction.

Files are named ``NNNN_snake_name.sql`` (``0001_tasks_and_events.sql``) in ``sqlite/`` and
``postgresql/``; both folders hold the same versions. A file and its ``schema_version`` row are
committed together, so a failing file leaves the schema and the version as they were.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import sqlalchemy as sa

from ..backends.base import SqlBackend
from ..clock import utcnow
from ..duties import exclusive
from ..errors import LobstoreError, MigrationError, SchemaVersionError
from ..schema import schema_version

log = logging.getLogger(__name__)

FILENAME_RE = re.compile(r"^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")

_CREATE_VERSION_TABLE = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DATETIME NOT NULL)"
    ),
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
    ),
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def load_migrations(source: Traversable | Path) -> list[Migration]:
    """Read and check one dialect's folder: strict names, versions 1..N with no gap or twin."""
    found: list[Migration] = []
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        match = FILENAME_RE.match(entry.name)
        if not match:
            raise MigrationError(
                f"migration file {entry.name!r} is misnamed: expected NNNN_snake_name.sql"
            )
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migrations must be numbered 1..N without gaps or duplicates: "
                f"expected version {expected:04d}, found {migration.label}"
            )
    return found


def packaged_migrations(dialect: str) -> list[Migration]:
    return list(_packaged(dialect))


@lru_cache(maxsize=None)
def _packaged(dialect: str) -> tuple[Migration, ...]:
    # Read once per process: /health asks for the schema version on every probe.
    folder = files(__name__).joinpath(dialect)
    if not folder.is_dir():
        raise MigrationError(f"lobstore ships no migrations for the {dialect!r} dialect")
    return tuple(load_migrations(folder))


class MigrationRunner:
    def __init__(self, backend: SqlBackend, migrations: list[Migration] | None = None) -> None:
        self.backend = backend
        self.dialect = backend.engine.dialect.name
        self.migrations = migrations if migrations is not None else packaged_migrations(self.dialect)

    @property
    def latest(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def current_version(self) -> int:
        """The highest applied version, 0 for an empty database."""
        with self.backend.reading() as conn:
            return version_in(conn)

    def pending(self) -> list[Migration]:
        current = self.current_version()
        self._refuse_newer(current)
        return [m for m in self.migrations if m.version > current]

    def check(self) -> None:
        """Raise SchemaVersionError unless the database is exactly at this code's version."""
        current = self.current_version()
        self._refuse_newer(current)
        if current < self.latest:
            raise SchemaVersionError(
                f"the database schema is at version {current} and this lobstore needs {self.latest}: "
                "run `lobstore migrate` (or open the store with migrate=True)",
                current=current,
                expected=self.latest,
            )

    def apply(self, dry_run: bool = False) -> list[Migration]:
        """Apply what is pending, oldest first; return what was (or, dry, would be) applied.

        Under the database's migration lock: when several replicas start at once, one applies
        the migrations and the others wait, then find nothing pending."""
        if dry_run:
            return self.pending()
        with exclusive(self.backend, "migrations"):
            return self._apply(self.pending())

    def _apply(self, todo: list[Migration]) -> list[Migration]:
        applied = []
        for migration in todo:
            log.info("applying migration %s", migration.label)
            try:
                with self.backend.writing() as conn:
                    # Re-check under the write lock: another process may have got here first.
                    if version_in(conn) >= migration.version:
                        continue
                    conn.exec_driver_sql(_CREATE_VERSION_TABLE[self.dialect])
                    self.backend.execute_script(conn, migration.sql)
                    conn.execute(
                        sa.insert(schema_version).values(
                            version=migration.version, name=migration.name, applied_at=utcnow()
                        )
                    )
            except LobstoreError as exc:
                raise MigrationError(
                    f"migration {migration.label} failed and was rolled back: {exc}",
                    version=migration.version,
                ) from exc
            applied.append(migration)
        return applied

    def _refuse_newer(self, current: int) -> None:
        if current > self.latest:
            raise SchemaVersionError(
                f"the database schema is at version {current}, newer than this lobstore knows "
                f"(up to {self.latest}): upgrade lobstore before using this database",
                current=current,
                expected=self.latest,
            )


def version_in(conn: sa.Connection) -> int:
    """The schema version of the database behind ``conn`` (0 when empty), in its transaction."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
