"""The client's outbox: writes that could not reach lobwife wait here, in a small local
SQLite file, and are replayed in order with their original idempotency keys.

An entry the server refuses with a 4xx is moved to ``rejected`` with the reason: it is never
retried for ever and never dropped silently.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    server_errors INTEGER NOT NULL DEFAULT 0,  -- answers of 500: the server's fault, counted apart
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT,
    idempotency_key TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    rejected_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Entry:
    id: int
    method: str
    path: str
    body: Any
    idempotency_key: str
    queued_at: str


@dataclass(frozen=True)
class Rejected:
    entry: Entry
    status: int
    reason: str


class Outbox:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a queued write must survive a crash
            yield conn
        finally:
            conn.close()

    def add(self, method: str, path: str, body: Any, idempotency_key: str) -> Entry:
        queued_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        encoded = None if body is None else json.dumps(body)
        with self._lock, self._connect() as conn:
            entry_id = conn.execute(
                "INSERT INTO outbox (method, path, body, idempotency_key, queued_at) VALUES (?, ?, ?, ?, ?)",
                (method, path, encoded, idempotency_key, queued_at),
            ).lastrowid
        return Entry(entry_id, method, path, body, idempotency_key, queued_at)

    def oldest(self) -> Entry | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT id, method, path, body, idempotency_key, queued_at FROM outbox ORDER BY id LIMIT 1"
            ).fetchone()
        return None if row is None else _entry(row)

    def pending(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def entries(self) -> list[Entry]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, method, path, body, idempotency_key, queued_at FROM outbox ORDER BY id"
            ).fetchall()
        return [_entry(row) for row in rows]

    def done(self, entry: Entry) -> None:
        with self._lock, self._connect() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (entry.id,))

    def failed_attempt(self, entry: Entry, problem: str, *, server_error: bool = False) -> int:
        """Note a failed replay. Returns how many server errors (answers of 500, as opposed to
        lobwife being unreachable) the entry has met."""
        with self._lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, server_errors = server_errors + ?, last_error = ? "
                "WHERE id = ?",
                (int(server_error), problem, entry.id),
            )
            row = conn.execute("SELECT server_errors FROM outbox WHERE id = ?", (entry.id,)).fetchone()
            conn.execute("COMMIT")
        return 0 if row is None else row[0]

    def reject(self, entry: Entry, status: int, reason: str) -> None:
        """Move an entry aside, with why, in one transaction."""
        rejected_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO rejected (id, method, path, body, idempotency_key, queued_at, rejected_at, status, reason) "
                "SELECT id, method, path, body, idempotency_key, queued_at, ?, ?, ? FROM outbox WHERE id = ?",
                (rejected_at, status, reason, entry.id),
            )
            conn.execute("DELETE FROM outbox WHERE id = ?", (entry.id,))
            conn.execute("COMMIT")

    def rejected(self) -> list[Rejected]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, method, path, body, idempotency_key, queued_at, status, reason FROM rejected ORDER BY id"
            ).fetchall()
        return [Rejected(_entry(row[:6]), row[6], row[7]) for row in rows]


def _entry(row: tuple) -> Entry:
    entry_id, method, path, body, key, queued_at = row
    return Entry(entry_id, method, path, None if body is None else json.loads(body), key, queued_at)
