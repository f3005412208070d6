"""``lobstore backup``: a consistent, compressed copy of the store, taken while it serves.

How the copy is made (each is one moment of the database, whatever writers do meanwhile):

- **SQLite**: SQLite's online backup API, page by page, from one read transaction (a WAL
  snapshot writers never wait for) — never a file copy of a live WAL database.
- **PostgreSQL**, ``pg_dump`` when its client tools are installed and not older than the
  server: the dump runs in a snapshot exported by our own REPEATABLE READ transaction, and the
  manifest's counts and checksums are computed in that same snapshot.
- **PostgreSQL** otherwise (or ``method="sqlite"``): a logical copy of every table into a
  SQLite file, read in one REPEATABLE READ snapshot. This one restores into SQLite or
  PostgreSQL alike.

The payload and a manifest (schema version, row counts and checksums of every table, the
payload's SHA-256) go into one gzip-compressed tar (``archive.py``), which appears under its
final name only when it is complete and on disk.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends import SqlBackend, backend_for
from ..backends.sqlite import self_contained
from ..clock import to_iso, utcnow
from ..errors import ConfigurationError, ValidationError
from ..migrations import MigrationRunner, version_in
from ..store import Store
from . import pgtools
from .archive import FORMAT, FORMAT_VERSION, PAYLOAD_NAMES, work_folder, write_archive
from .checksum import TableDigest, combined_checksum, count_tables, digest_tables
from .copy import copy_between

log = logging.getLogger(__name__)

METHODS = ("auto", "sqlite", "pg_dump")
STEP_PAGES = 1024  # pages per online-backup step (4 MiB at SQLite's default page size)
NAME_PREFIX = "lobstore-"
NAME_SUFFIX = ".tar.gz"
Progress = Callable[[str], None]  # a line saying what the backup is doing


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    bytes: int
    seconds: float


def backup_name(at: datetime) -> str:
    """The file name of a backup taken at ``at``: ``lobstore-20260301T120000Z.tar.gz``."""
    return f"{NAME_PREFIX}{at:%Y%m%dT%H%M%SZ}{NAME_SUFFIX}"


def backup(
    source: str | Store | SqlBackend,
    dest: str | os.PathLike[str],
    *,
    method: str = "auto",
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> BackupResult:
    """Back up ``source`` (a URL, opened read-only; or a running store) into the file ``dest``,
    or into a new ``lobstore-<time>.tar.gz`` when ``dest`` is a folder. An existing file is
    never replaced."""
    if method not in METHODS:
        raise ValidationError(f"backup method must be one of {', '.join(METHODS)}, got {method!r}", field="method")
    began = time.monotonic()
    taken_at = clock()
    path = destination(dest, taken_at)
    say = progress or (lambda _line: None)
    backend, owned = _open(source)
    try:
        with work_folder(path) as scratch:
            kind, payload_info = _make_payload(backend, method, scratch, say)
            tables: dict[str, TableDigest] = payload_info.pop("tables")
            complete = all(d.sha256 is not None for d in tables.values())
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": to_iso(taken_at),
                "lobstore_version": __version__,
                "source": {"backend": backend.name, "url": backend.url},
                "schema_version": payload_info.pop("schema_version"),
                "tables": {name: d.to_dict() for name, d in tables.items()},
                "checksum": combined_checksum(tables) if complete else None,
                **payload_info,
            }
            say(f"writing {path.name}")
            manifest = write_archive(path, scratch / PAYLOAD_NAMES[kind], kind, manifest, scratch)
            size = path.stat().st_size
    finally:
        if owned:
            backend.close()
    seconds = time.monotonic() - began
    log.info("backup %s written: %s bytes in %.1f s (%s)", path, f"{size:,}", seconds, manifest["method"])
    return BackupResult(path=path, manifest=manifest, bytes=size, seconds=seconds)


def destination(dest: str | os.PathLike[str], at: datetime) -> Path:
    """The backup file's path: ``dest`` itself, or a new name inside ``dest`` if it is a folder."""
    path = Path(dest).expanduser()
    if path.is_dir():
        path = path / backup_name(at)
    if path.exists():
        raise ConfigurationError(f"{path} already exists: a backup never replaces a file (choose another name)")
    if not path.parent.is_dir():
        raise ConfigurationError(f"cannot write the backup {path}: folder {path.parent} does not exist")
    return path


# -- the payloads ---------------------------------------------------------------------------------
def _make_payload(backend: SqlBackend, method: str, scratch: Path, say: Progress) -> tuple[str, dict[str, Any]]:
    if backend.name == "sqlite":
        if method == "pg_dump":
            raise ConfigurationError("pg_dump backs up PostgreSQL; this store is SQLite")
        return "sqlite", _sqlite_backup(backend, scratch / PAYLOAD_NAMES["sqlite"], say)
    if method in ("auto", "pg_dump"):
        with backend.snapshot() as conn:
            why_not = pgtools.usable("pg_dump", conn)
        if why_not is None:
            return "pg_dump", _pg_dump(backend, scratch / PAYLOAD_NAMES["pg_dump"], say)
        if method == "pg_dump":
            raise ConfigurationError(f"cannot back up with pg_dump: {why_not}")
        log.info("backing up with a logical copy into SQLite: %s", why_not)
    return "sqlite", _logical_copy(backend, scratch / PAYLOAD_NAMES["sqlite"], say)


def _sqlite_backup(backend: SqlBackend, payload: Path, say: Progress) -> dict[str, Any]:
    shown = {"step": 0}

    def step(remaining: int, total: int) -> None:
        shown["step"] += 1
        if shown["step"] % 16 == 1 or remaining == 0:  # every 64 MiB or so, and the end
            say(f"copying pages: {total - remaining:,} of {total:,}")

    say(f"backing up {backend.url} with SQLite's online backup")
    backend.backup_to(str(payload), step_pages=STEP_PAGES, progress=step)  # type: ignore[attr-defined]
    return {"method": "sqlite-online-backup", **_describe_file(payload, say)}


def _logical_copy(backend: SqlBackend, payload: Path, say: Progress) -> dict[str, Any]:
    say(f"copying {backend.url} table by table into SQLite (one snapshot)")
    target = backend_for(f"sqlite:///{payload}")
    try:
        copy_between(backend, target, _copy_progress(say))
    finally:
        target.close()
    self_contained(str(payload))
    return {"method": "logical-copy", **_describe_file(payload, say)}


def _pg_dump(backend: SqlBackend, payload: Path, say: Progress) -> dict[str, Any]:
    say(f"backing up {backend.url} with pg_dump (one exported snapshot)")
    with backend.snapshot() as conn:
        snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        server = conn.exec_driver_sql("SHOW server_version").scalar_one()
        dump = pgtools.start_dump(backend, snapshot, schema, payload)
        try:  # counted and checksummed while pg_dump runs, in the snapshot it dumps
            described = _describe(conn, MigrationRunner(backend).latest, say)
        except BaseException:
            dump.kill()
            dump.wait()
            raise
        pgtools.finish(dump, "pg_dump")  # before the snapshot's transaction ends
    return {"method": "pg_dump", "postgresql": {"schema": schema, "server_version": server}, **described}


def _describe_file(payload: Path, say: Progress) -> dict[str, Any]:
    copy = backend_for(f"sqlite:///{payload}", read_only=True)
    try:
        with copy.snapshot() as conn:
            return _describe(conn, MigrationRunner(copy).latest, say)
    finally:
        copy.close()


def _describe(conn: Any, latest: int, say: Progress) -> dict[str, Any]:
    """Schema version, and per table the row count and checksum — or only the count when the
    database is at another schema version than this code (its tables are not ``schema.py``'s)."""
    version = version_in(conn)
    say("counting and checksumming every table")
    tables = digest_tables(conn) if version == latest else count_tables(conn)
    return {"schema_version": version, "tables": tables}


def _copy_progress(say: Progress) -> Callable[[str, int, int], None]:
    def report(table: str, done: int, total: int) -> None:
        if done == total or (done and done % 100_000 == 0):
            say(f"  {table}: {done:,} of {total:,} rows")

    return report


def _open(source: str | Store | SqlBackend) -> tuple[SqlBackend, bool]:
    if isinstance(source, Store):
        return source.backend, False
    if isinstance(source, SqlBackend):
        return source, False
    return backend_for(source, read_only=True), True  # a backup never creates or changes its source
