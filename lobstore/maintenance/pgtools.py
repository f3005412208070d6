"""PostgreSQL's own tools, ``pg_dump`` and ``pg_restore``, run as child processes.

The password never goes on a command line (other users can read those): it is passed in
``PGPASSWORD``. A ``pg_dump`` older than the server cannot dump it, so the tools are only used
when their major version is at least the server's.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import sqlalchemy as sa

from ..backends import SqlBackend
from ..errors import ConfigurationError, LobstoreError

log = logging.getLogger(__name__)

# pg_restore list entries that make the schema itself: it exists in the target already (public)
# or is made by the restore beforehand, and CREATE SCHEMA would fail there.
_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ (SCHEMA|COMMENT - SCHEMA) ")


class PgToolError(LobstoreError):
    code = "pg_tool_failed"


def tool(name: str) -> str | None:
    """The path of ``pg_dump`` / ``pg_restore`` on PATH, or None."""
    return shutil.which(name)


def usable(name: str, conn: sa.Connection) -> str | None:
    """Why ``name`` cannot serve the server behind ``conn`` (None: it can)."""
    path = tool(name)
    if path is None:
        return f"{name} is not installed (PostgreSQL's client tools)"
    server = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000
    found = _major(path)
    if found is None or found < server:
        return f"{name} {found or '?'} is older than the server ({server}): install the client tools of version {server}"
    return None


def connection(backend: SqlBackend) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``backend``'s database (password left out) and the
    environment that carries the password. Built with psycopg's own quoting: a URL rendered by
    SQLAlchemy writes spaces as '+', which libpq does not read back as spaces."""
    from psycopg.conninfo import make_conninfo

    url = backend.engine.url
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    params = {key: (" ".join(value) if isinstance(value, tuple) else value) for key, value in url.query.items()}
    parts = {"host": url.host, "port": url.port, "user": url.username, "dbname": url.database, **params}
    return make_conninfo(**{key: str(value) for key, value in parts.items() if value is not None}), env


def start_dump(backend: SqlBackend, snapshot: str, schema: str, target: Path) -> subprocess.Popen[bytes]:
    """Start ``pg_dump`` of ``schema`` as of the exported ``snapshot`` (whose transaction must
    stay open until it ends) into ``target``: custom format, uncompressed (the backup file is
    compressed as a whole), without owners and grants (a restore makes its own)."""
    uri, env = connection(backend)
    command = [tool("pg_dump") or "pg_dump", "--format=custom", "--compress=0", f"--snapshot={snapshot}",
               f"--schema={schema}", "--no-owner", "--no-privileges", f"--file={target}", f"--dbname={uri}"]
    log.info("running pg_dump of schema %s", schema)
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[bytes], name: str) -> None:
    _, err = process.communicate()
    if process.returncode != 0:
        raise PgToolError(f"{name} failed (exit {process.returncode}): {_last_line(err)}")


def restore(backend: SqlBackend, dump: Path, scratch: Path) -> None:
    """Restore ``dump`` into ``backend``'s database in one transaction (all or nothing),
    leaving out the schema's own entry (the schema is there already)."""
    path = tool("pg_restore")
    if path is None:
        raise ConfigurationError("restoring a pg_dump backup needs pg_restore (PostgreSQL's client tools)")
    listing = subprocess.run([path, "--list", str(dump)], capture_output=True)
    if listing.returncode != 0:
        raise PgToolError(f"pg_restore cannot read the dump: {_last_line(listing.stderr)}")
    entries = scratch / "restore.list"
    entries.write_bytes(b"\n".join(
        line for line in listing.stdout.splitlines() if not _SCHEMA_ENTRY.match(line.decode("utf-8", "replace"))
    ) + b"\n")
    uri, env = connection(backend)
    run = subprocess.run(
        [path, "--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges",
         f"--use-list={entries}", f"--dbname={uri}", str(dump)],
        env=env, capture_output=True,
    )
    if run.returncode != 0:
        raise PgToolError(f"pg_restore failed, nothing was restored: {_last_line(run.stderr)}")


def _major(path: str) -> int | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def _last_line(err: bytes) -> str:
    """The line of a tool's stderr that says what went wrong (its first error, else its last)."""
    lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no message"])[0 if errors else -1]
