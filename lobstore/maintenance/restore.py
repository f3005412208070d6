"""``lobstore restore``: a backup into an empty database, verified before it is trusted.

What is checked, in order:

1. the payload's size and SHA-256 against the manifest (a damaged file stops here, before
   anything is written);
2. after the restore, every table's row count and checksum against the manifest — or, for a
   backup of an older schema that the restore migrated, against the migrated payload (and the
   counts against the manifest before migrating).

Where it goes:

- a SQLite payload into a SQLite file that does not exist yet: the checked payload is moved
  into place (flushed to disk and linked under the new name: all or nothing);
- a SQLite payload into any other database (PostgreSQL, or an existing empty SQLite file):
  ``lobstore copy``'s copy, one transaction, ids kept, sequences moved past them;
- a ``pg_dump`` payload into PostgreSQL only, with ``pg_restore`` in one transaction, into a
  database (schema) that holds no lobstore tables yet.

A restore refuses a database that already holds data: it never merges and never overwrites.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..backends import SqlBackend, backend_for
from ..backends.sqlite import self_contained
from ..errors import ConfigurationError, ConflictError, LobstoreError, SchemaVersionError
from ..migrations import MigrationRunner, packaged_migrations, version_in
from . import pgtools
from .archive import extract_payload, fsync_file, fsync_folder, read_manifest
from .checksum import TableDigest, count_tables, differences, digest_tables, digests_from_dict
from .copy import copy_between

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class RestoreCheckError(LobstoreError):
    """The restored database does not match the backup."""

    code = "restore_check_failed"


@dataclass(frozen=True)
class RestoreResult:
    url: str
    manifest: dict[str, Any]
    counts: dict[str, int]
    checked: str  # what the restored tables were compared with
    migrated_from: int | None  # the backup's schema version when the restore migrated it
    seconds: float


def restore(archive: str | os.PathLike[str], url: str, *, progress: Progress | None = None) -> RestoreResult:
    began = time.monotonic()
    say = progress or (lambda _line: None)
    path = Path(archive).expanduser()
    manifest = read_manifest(path)
    version = int(manifest["schema_version"])
    dialect = _dialect(url)
    latest = packaged_migrations(dialect)[-1].version
    if version > latest:
        raise SchemaVersionError(
            f"{path} holds schema version {version}, newer than this lobstore knows ({latest}): "
            "restore it with the lobstore version that made it", current=version, expected=latest,
        )
    kind = manifest["payload"]["kind"]
    if kind == "pg_dump" and dialect != "postgresql":
        raise ConfigurationError(
            f"{path} was made with pg_dump and restores into PostgreSQL only; for SQLite, back up "
            "with `lobstore backup --method sqlite` (a portable SQLite copy)"
        )
    expected = digests_from_dict(manifest["tables"])
    target_file = _new_sqlite_file(url)
    scratch_parent = target_file.parent if target_file else None
    with tempfile.TemporaryDirectory(prefix=".lobstore-restore-", dir=scratch_parent) as folder:
        scratch = Path(folder)
        say(f"checking {path.name}")
        payload = extract_payload(path, manifest, scratch)
        if kind == "pg_dump":
            counts, checked = _restore_pg_dump(payload, url, manifest, expected, scratch, say)
        else:
            counts, checked = _restore_sqlite(payload, url, target_file, version, expected, say)
    seconds = time.monotonic() - began
    log.info("restored %s into %s in %.1f s (%s)", path, url, seconds, checked)
    return RestoreResult(url=url, manifest=manifest, counts=counts, checked=checked,
                         migrated_from=version if version < latest else None, seconds=seconds)


# -- SQLite payloads --------------------------------------------------------------------------------
def _restore_sqlite(payload: Path, url: str, target_file: Path | None, version: int,
                    expected: dict[str, TableDigest], say: Progress) -> tuple[dict[str, int], str]:
    checked = "the backup's checksums"
    source = backend_for(f"sqlite:///{payload}")
    try:
        runner = MigrationRunner(source)
        if version < runner.latest:
            _check(_tables_of(source, counts_only=True), expected, "the backup (before migrating it)")
            say(f"migrating the backup from schema version {version} to {runner.latest}")
            runner.apply()
            expected, checked = _tables_of(source), f"the backup migrated from schema version {version}"
        if target_file is not None:
            # Checked here, then moved as it is: the restored file is these very bytes.
            say("counting and checksumming every table of the backup")
            actual = _tables_of(source)
            _check(actual, expected, "the backup")
            source.close()
            self_contained(str(payload))  # whatever the migration wrote is in the file itself
            say(f"moving the checked database to {target_file}")
            _move_into_place(payload, target_file)
        else:
            target = backend_for(url)
            try:
                say(f"copying into {target.url}")
                copy_between(source, target)
                say("counting and checksumming every restored table")
                actual = _tables_of(target)
                _check(actual, expected, target.url)
            finally:
                target.close()
    finally:
        source.close()
    return {name: d.rows for name, d in actual.items()}, checked


def _move_into_place(payload: Path, target: Path) -> None:
    fsync_file(payload)
    try:
        os.link(payload, target)  # unlike a rename, fails if the name was taken meanwhile
    except FileExistsError:
        raise ConflictError(f"{target} appeared during the restore; it was left as it is") from None
    fsync_folder(target.parent)


# -- pg_dump payloads -----------------------------------------------------------------------------
def _restore_pg_dump(payload: Path, url: str, manifest: dict[str, Any], expected: dict[str, TableDigest],
                     scratch: Path, say: Progress) -> tuple[dict[str, int], str]:
    schema = manifest.get("postgresql", {}).get("schema", "public")
    target = backend_for(url)
    try:
        with target.writing() as conn:
            # The schema the URL works in: current_schema() once it exists, else the first entry
            # of its search_path (made here, so a URL naming a new schema can be restored into).
            current = conn.exec_driver_sql("SELECT current_schema()").scalar()
            wanted = current or _first_on_path(conn.exec_driver_sql("SHOW search_path").scalar_one())
            if wanted != schema:
                raise ConfigurationError(
                    f"the backup holds schema {schema!r} but {target.url} works in {wanted!r}: restore "
                    f"into a URL whose search_path is {schema!r} (e.g. ?options=-csearch_path%3D{schema})"
                )
            if current is None:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            elif sa.inspect(conn).has_table("schema_version"):
                raise ConflictError(
                    f"{target.url} already holds lobstore tables: a pg_dump backup restores into a new "
                    "database only (createdb, then restore)"
                )
        say(f"restoring into {target.url} with pg_restore (one transaction)")
        pgtools.restore(target, payload, scratch)
        version = int(manifest["schema_version"])
        runner = MigrationRunner(target)
        say("counting and checksumming every restored table")
        actual = _tables_of(target, counts_only=version != runner.latest)
        _check(actual, expected, target.url)
        checked = "the backup's checksums" if version == runner.latest else "the backup's row counts"
        if version < runner.latest:
            say(f"migrating from schema version {version} to {runner.latest}")
            runner.apply()
    finally:
        target.close()
    return {name: d.rows for name, d in actual.items()}, checked


# -- checks -----------------------------------------------------------------------------------------
def _tables_of(backend: SqlBackend, *, counts_only: bool = False) -> dict[str, TableDigest]:
    with backend.snapshot() as conn:
        if counts_only or version_in(conn) != MigrationRunner(backend).latest:
            return count_tables(conn)
        return digest_tables(conn)


def _check(actual: dict[str, TableDigest], expected: dict[str, TableDigest], where: str) -> None:
    found = differences(expected, actual)
    if found:
        raise RestoreCheckError(
            f"{where} does not match the backup — do not use it: " + "; ".join(found[:5])
            + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")
        )


def _first_on_path(search_path: str) -> str:
    first = search_path.split(",")[0].strip()
    return first[1:-1].replace('""', '"') if first.startswith('"') and first.endswith('"') else first


def _dialect(url: str) -> str:
    try:
        name = make_url(url).get_backend_name()
    except Exception:  # noqa: BLE001 - backend_for says what is wrong with it
        backend_for(url).close()
        raise
    return "postgresql" if name in ("postgresql", "postgres") else name


def _new_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL that does not exist yet (restored by moving the payload into
    place); None for any other target."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or "mode=memory" in database:
        raise ConfigurationError("restore into a file or a server: an in-memory database ends with the command")
    path = Path(os.path.abspath(database))
    if not path.parent.is_dir():
        raise ConfigurationError(f"cannot restore into {path}: folder {path.parent} does not exist")
    return None if path.exists() else path
