#!/usr/bin/env python3
"""Store throughput: lobstore next to the same work done with the raw driver.

    python bench/bench_store.py                       # SQLite, a temporary file
    python bench/bench_store.py --url postgresql://postgres@127.0.0.1:5432/test

Figures: tasks created per second (each with its event, one transaction per create; one
thread and 8 threads), updates per second (status/name change with its event), and the time
to list 50 tasks filtered by status out of 100,000. Beside each, the same statements through
sqlite3 (same pragmas, same write lock) or psycopg, and lobstore's share of the raw rate.
PostgreSQL runs in a private schema that is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lobstore import open_store  # noqa: E402
from lobstore.backends.sqlite import PRAGMAS  # noqa: E402

TASK_INSERT = (
    "INSERT INTO tasks (name, slug, type, status, priority, repos, requires_qa, tags, created_at, "
    "updated_at, queued_at, version) VALUES ({p}, {p}, 'swe', 'queued', 'normal', '[]', {false}, '[]', "
    "{p}, {p}, {p}, 1)"
)
EVENT_INSERT = (
    "INSERT INTO task_events (task_id, event_type, detail, actor, data, created_at) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
)


# -- raw drivers: the floor lobstore is measured against -------------------------------------
class RawSQLite:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.local = threading.local()
        self.task_sql = TASK_INSERT.format(p="?", false="0")
        self.event_sql = EVENT_INSERT.format(p="?")

    def conn(self) -> sqlite3.Connection:
        if not hasattr(self.local, "conn"):
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in PRAGMAS:
                conn.execute(pragma)
            self.local.conn = conn
        return self.local.conn

    def create(self, name: str) -> None:
        now = _now()
        conn = self.conn()
        with self.lock:
            conn.execute("BEGIN IMMEDIATE")
            task_id = conn.execute(self.task_sql, (name, name, now, now, now)).lastrowid
            conn.execute(self.event_sql, (task_id, "created", name, "bench", json.dumps({"status": "queued"}), now))
            conn.execute("COMMIT")

    def update(self, task_id: int, name: str) -> None:
        now = _now()
        conn = self.conn()
        with self.lock:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,))  # the old values, as lobstore reads
            row = cursor.fetchone()
            version = row[[d[0] for d in cursor.description].index("version")]
            conn.execute("UPDATE tasks SET name = ?, updated_at = ?, version = ? WHERE id = ? AND version = ?",
                         (name, now, version + 1, task_id, version))
            conn.execute(self.event_sql, (task_id, "updated", "name", "bench", json.dumps({"changes": {}}), now))
            conn.execute("COMMIT")

    def list_status(self, status: str) -> list:
        conn = self.conn()
        conn.execute("BEGIN")
        rows = conn.execute("SELECT * FROM tasks WHERE status = ? ORDER BY id LIMIT 50", (status,)).fetchall()
        conn.execute("COMMIT")
        return rows


class RawPostgres:
    def __init__(self, url: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self.local = threading.local()
        self.task_sql = TASK_INSERT.format(p="%s", false="false") + " RETURNING id"
        self.event_sql = EVENT_INSERT.format(p="%s")

    def conn(self):
        if not hasattr(self.local, "conn"):
            self.local.conn = self.psycopg.connect(self.url)
        return self.local.conn

    def create(self, name: str) -> None:
        now = datetime.now(timezone.utc)
        with self.conn().transaction():
            task_id = self.conn().execute(self.task_sql, (name, name, now, now, now)).fetchone()[0]
            self.conn().execute(self.event_sql, (task_id, "created", name, "bench", json.dumps({"status": "queued"}), now))

    def update(self, task_id: int, name: str) -> None:
        now = datetime.now(timezone.utc)
        conn = self.conn()
        with conn.transaction():
            version = conn.execute("SELECT version FROM tasks WHERE id = %s FOR UPDATE", (task_id,)).fetchone()[0]
            conn.execute("UPDATE tasks SET name = %s, updated_at = %s, version = %s WHERE id = %s AND version = %s",
                         (name, now, version + 1, task_id, version))
            conn.execute(self.event_sql, (task_id, "updated", "name", "bench", json.dumps({"changes": {}}), now))

    def list_status(self, status: str) -> list:
        with self.conn().transaction():
            return self.conn().execute(
                "SELECT * FROM tasks WHERE status = %s ORDER BY id LIMIT 50", (status,)).fetchall()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.000000")


# -- the work ---------------------------------------------------------------------------------
def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def run_threads(threads: int, per_thread: int, work) -> float:
    start = time.perf_counter()
    workers = [threading.Thread(target=lambda w=w: [work(w, n) for n in range(per_thread)]) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def median_ms(fn, repeat: int) -> float:
    fn()  # warm caches
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def fill(store, total: int) -> None:
    """Bulk-load ``total`` tasks, most completed, 1 in 200 blocked (the status listed)."""
    batch = 2000
    done = store.tasks.count()
    print(f"  loading {total:,} tasks for the list test ...", end="", flush=True)
    while done < total:
        with store.transaction() as tx:
            for n in range(done, min(total, done + batch)):
                status = "blocked" if n % 200 == 0 else "completed"
                tx.tasks.create(name=f"bulk {n}", status=status, type="swe" if n % 3 else "research")
        done = min(total, done + batch)
    print(" done")


def bench(store, raw, reader, creates: int, threads: int, updates: int, list_size: int) -> list[tuple]:
    """``raw`` repeats the writes in a database of its own; ``reader`` reads lobstore's."""
    results = []
    per_thread = max(1, creates // threads)

    t = run_threads(1, creates, lambda w, n: store.tasks.create(name=f"single {n}", actor="bench"))
    r = run_threads(1, creates, lambda w, n: raw.create(f"raw single {n}"))
    results.append(("creates/s, 1 thread", rate(creates, t), rate(creates, r)))

    t = run_threads(threads, per_thread, lambda w, n: store.tasks.create(name=f"t{w} {n}", actor="bench"))
    r = run_threads(threads, per_thread, lambda w, n: raw.create(f"raw t{w} {n}"))
    results.append((f"creates/s, {threads} threads", rate(threads * per_thread, t), rate(threads * per_thread, r)))

    t = run_threads(1, updates, lambda w, n: store.tasks.update(1 + n % 100, name=f"renamed {n}", actor="bench"))
    r = run_threads(1, updates, lambda w, n: raw.update(2 + n % 100, f"raw renamed {n}"))
    results.append(("updates/s, 1 thread", rate(updates, t), rate(updates, r)))

    fill(store, list_size)
    lib_ms = median_ms(lambda: store.tasks.list(status="blocked", limit=50), 200)
    raw_ms = median_ms(lambda: reader.list_status("blocked"), 200)
    assert len(store.tasks.list(status="blocked", limit=50)) == 50
    results.append((f"list 50 by status of {list_size:,} (ms)", lib_ms, raw_ms))
    return results


def report(label: str, results: list[tuple]) -> None:
    print(f"\n{label}")
    print(f"  {'measure':<38} {'lobstore':>10} {'raw':>10} {'lobstore/raw':>13}")
    for name, lib, raw in results:
        if name.endswith("(ms)"):  # a time: lobstore's share of the raw speed is raw/lib
            print(f"  {name:<38} {lib:>10.3f} {raw:>10.3f} {raw / lib:>12.0%}")
        else:
            print(f"  {name:<38} {lib:>10.0f} {raw:>10.0f} {lib / raw:>12.0%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a PostgreSQL server URL; default: SQLite in a temporary file")
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--list-size", type=int, default=100_000)
    args = parser.parse_args()

    if args.url:
        import sqlalchemy as sa

        schema = f"lobstore_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.url.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in args.url else "?"
        url = f"{args.url}{sep}options={quote(f'-csearch_path={schema}')}"
        try:
            with open_store(url) as store:
                raw = RawPostgres(url)  # the same schema: its rows only add to the pile
                report(f"PostgreSQL ({args.url}, schema {schema})",
                       bench(store, raw, raw, args.creates, args.threads, args.updates, args.list_size))
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        return 0

    with tempfile.TemporaryDirectory() as folder:
        lib_path = os.path.join(folder, "lobstore.db")
        raw_path = os.path.join(folder, "raw.db")
        with open_store(f"sqlite:///{lib_path}") as store:
            open_store(f"sqlite:///{raw_path}").close()  # the same schema for the raw side
            report(f"SQLite file in {folder} (WAL, synchronous=FULL)",
                   bench(store, RawSQLite(raw_path), RawSQLite(lib_path),
                         args.creates, args.threads, args.updates, args.list_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
