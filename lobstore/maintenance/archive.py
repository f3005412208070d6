"""The backup file: a gzip-compressed tar holding ``manifest.json`` and one payload file.

    manifest.json     what the backup is: format, when, from where, schema version, row
                      counts and checksums per table, and the payload's name, size and SHA-256
    lobstore.sqlite   a SQLite database (from SQLite, or a logical copy of PostgreSQL), or
    lobstore.pgdump   a pg_dump archive (custom format) of PostgreSQL

Standard tools read it (``tar -xzf backup.tar.gz manifest.json``). A backup file only ever
appears whole: it is written under a hidden temporary name in the destination's folder,
flushed to disk, and linked under its final name (atomic on one file system, and never over
a file that is already there). A killed backup leaves at most a
``.NAME.partial-*`` folder behind, never a file under the final name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import LobstoreError, ValidationError

FORMAT = "lobstore-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PAYLOAD_NAMES = {"sqlite": "lobstore.sqlite", "pg_dump": "lobstore.pgdump"}
PARTIAL = ".partial-"  # in the name of a backup still being written
COMPRESS_LEVEL = 6  # gzip: about as small as 9 for SQLite pages, at a third of the time
CHUNK = 1024 * 1024


class BackupFileError(ValidationError):
    """The file is not a lobstore backup, or it is damaged."""

    code = "bad_backup"


@contextmanager
def work_folder(dest: Path) -> Iterator[Path]:
    """A hidden scratch folder beside ``dest`` (same file system: the final link is atomic),
    removed afterwards whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix=f".{dest.name}{PARTIAL}", dir=dest.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_archive(dest: Path, payload: Path, kind: str, manifest: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Write the backup file ``dest`` from ``payload``: manifest first, then the payload, into
    ``scratch`` first; flushed to disk, then linked into place. Returns the manifest written
    (with the payload's name, size and SHA-256)."""
    name = PAYLOAD_NAMES[kind]
    manifest = {**manifest, "payload": {"name": name, "kind": kind, "bytes": payload.stat().st_size,
                                        "sha256": file_sha256(payload)}}
    partial = scratch / (dest.name + ".tmp")
    # Readable by the owner only: a backup holds the whole store.
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(payload.stat().st_mtime), 0o600
            tar.addfile(info, io.BytesIO(data))
            tar.add(payload, arcname=name, recursive=False, filter=_private)
        raw.flush()
        os.fsync(raw.fileno())
    try:
        os.link(partial, dest)  # unlike a rename, never replaces a file that appeared meanwhile
    except FileExistsError:
        raise LobstoreError(f"{dest} appeared while the backup was written; the new one was not kept") from None
    fsync_folder(dest.parent)
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the backup at ``path``, checked to be one this lobstore reads."""
    with _open(path) as tar:
        member = tar.next()
        if member is None or member.name != MANIFEST:
            raise BackupFileError(f"{path} is not a lobstore backup: its first entry is not {MANIFEST}")
        reader = tar.extractfile(member)
        try:
            manifest = json.loads(reader.read(1024 * 1024)) if reader else None
        except ValueError as exc:
            raise BackupFileError(f"{path}: its manifest is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupFileError(f"{path} is not a lobstore backup (no {FORMAT!r} manifest)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupFileError(
            f"{path} is a lobstore backup of format {manifest.get('format_version')!r}; this lobstore "
            f"reads format {FORMAT_VERSION}: restore it with the lobstore version that made it"
        )
    payload = manifest.get("payload")
    if not isinstance(payload, dict) or payload.get("kind") not in PAYLOAD_NAMES:
        raise BackupFileError(f"{path}: its manifest names no payload this lobstore knows")
    return manifest


def extract_payload(path: Path, manifest: dict[str, Any], into: Path) -> Path:
    """Unpack the payload into the folder ``into``, checking its size and SHA-256 against the
    manifest (a damaged or truncated backup is refused here, before anything is restored)."""
    expected = manifest["payload"]
    target = into / expected["name"]
    digest = hashlib.sha256()
    with _open(path) as tar:
        member = next((m for m in tar if m.name == expected["name"] and m.isfile()), None)
        if member is None:
            raise BackupFileError(f"{path} holds no {expected['name']}: the backup is incomplete")
        source = tar.extractfile(member)
        assert source is not None
        with open(target, "wb") as out:
            try:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            except (OSError, EOFError, tarfile.TarError) as exc:
                raise BackupFileError(f"{path} is damaged: {exc}") from None
    size = target.stat().st_size
    if size != expected["bytes"] or digest.hexdigest() != expected["sha256"]:
        raise BackupFileError(
            f"{path} is damaged: its {expected['name']} does not match the manifest's size and SHA-256"
        )
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make a new name in ``folder`` durable (its directory entry reaches the disk)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _open(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            yield tar
    except FileNotFoundError:
        raise BackupFileError(f"no backup at {path}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, PermissionError):
            raise
        raise BackupFileError(f"{path} is not a readable lobstore backup (gzip-compressed tar): {exc}") from None


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    return info
