#!/usr/bin/env python3
"""Cost events at fleet scale: ingest, a 30-day summary and a task total.

    python bench/bench_costs.py                      # SQLite, temporary files, 1,000,000 events
    python bench/bench_costs.py --events 100000      # a quicker look

Ingest: the events go in through ``store.costs.record_many`` in batches of 1,000 (one
transaction each: validated, task refs resolved, costed at the price of their time), beside
raw ``sqlite3`` ``executemany`` of the same rows in batches of 1,000 into the same schema with
the same pragmas (the floor: no checks, no costing, ids not returned). The events span 60 days
over 1,000 tasks and 4 models (one without a price), so the 30-day window holds about half.
Then, on the million-event store: the summary of the last 30 days grouped by model, and one
task's totals, each the median of 20 runs (after one warm-up run).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lobstore import open_store  # noqa: E402
from lobstore.backends.sqlite import PRAGMAS  # noqa: E402
from lobstore.clock import utcnow  # noqa: E402

from bench_store import median_ms  # noqa: E402  (median of runs after a warm-up)

BATCH = 1000
TASKS = 1000
MODELS = ("claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5", "local-llm")
RAW_INSERT = (
    "INSERT INTO cost_events (task_id, model, agent, input_tokens, output_tokens, cache_read_tokens, "
    "cache_write_tokens, cost_micro, cost_source, price_id, request_id, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def make_events(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    now = utcnow()
    events = []
    for n in range(count):
        task = rng.randrange(1, TASKS + 1)
        events.append({
            "task_id": task,
            "model": MODELS[n % len(MODELS)],
            "agent": f"lobster-swe-t{task}",
            "input_tokens": rng.randrange(100, 50_000),
            "output_tokens": rng.randrange(10, 5_000),
            "cache_read_tokens": rng.randrange(0, 100_000),
            "cache_write_tokens": 0,
            "request_id": f"req-{n}",
            "created_at": now - timedelta(seconds=rng.randrange(0, 60 * 86400)),
        })
    return events


def ingest_lobstore(store, events: list[dict]) -> float:
    start = time.perf_counter()
    for offset in range(0, len(events), BATCH):
        store.costs.record_many(events[offset:offset + BATCH])
        if offset % 100_000 == 0:
            print(f"\r  lobstore: {offset:,}", end="", file=sys.stderr, flush=True)
    print("\r", end="", file=sys.stderr)
    return time.perf_counter() - start


def ingest_raw(path: str, events: list[dict]) -> float:
    """The same rows (costs precomputed as plain numbers) with sqlite3 executemany."""
    rows = [
        (e["task_id"], e["model"], e["agent"], e["input_tokens"], e["output_tokens"], e["cache_read_tokens"],
         e["cache_write_tokens"], 1234, "computed", 1, e["request_id"],
         e["created_at"].strftime("%Y-%m-%d %H:%M:%S.000000"))
        for e in events
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    start = time.perf_counter()
    for offset in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(RAW_INSERT, rows[offset:offset + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()

    print(f"generating {args.events:,} events ...", file=sys.stderr)
    events = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="lobstore-bench-costs-") as folder:
        lib_path, raw_path = f"{folder}/lib.db", f"{folder}/raw.db"
        for path in (lib_path, raw_path):  # the same schema, tasks 1..1000 in both
            with open_store(f"sqlite:///{path}") as store, store.transaction() as tx:
                for n in range(TASKS):
                    tx.tasks.create(name=f"task {n}", type="swe" if n % 2 else "research")
        raw_s = ingest_raw(raw_path, events)
        with open_store(f"sqlite:///{lib_path}") as store:
            lib_s = ingest_lobstore(store, events)
            summary = store.costs.summary(period="month", group_by="model")
            summary_ms = median_ms(lambda: store.costs.summary(period="month", group_by="model"), 20)
            task_ms = median_ms(lambda: store.costs.for_task("T500"), 20)
            task = store.costs.for_task("T500")

    lib_rate, raw_rate = args.events / lib_s, args.events / raw_s
    print(f"\nSQLite, {args.events:,} cost events in batches of {BATCH:,} (synchronous=FULL, WAL)")
    print(f"  ingest, lobstore record_many   {lib_rate:>10,.0f} events/s  ({lib_s:.1f} s)")
    print(f"  ingest, raw sqlite3 executemany{raw_rate:>10,.0f} events/s  ({raw_s:.1f} s)")
    print(f"  lobstore / raw                 {lib_rate / raw_rate:>10.0%}   (aim: at least 33%)")
    print(f"  30-day summary by model        {summary_ms:>10.1f} ms median of 20 "
          f"({summary.totals.events:,} events in range, {len(summary.groups)} groups; aim < 200 ms)")
    print(f"  one task's total (T500)        {task_ms:>10.2f} ms median of 20 "
          f"({task.totals.events:,} events; aim < 5 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
