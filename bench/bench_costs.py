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

Budgets: ``--budget-events`` events ingested into two fresh stores, one with no budget and one
with 5 live budgets (fleet per day, a model per day, an agent per week, a task type per month,
a task in total; limits high enough that none is crossed: the steady state), in batches of
1,000 and one event per transaction (how a lobster posts). Aim: at least 0.8 of the rate
without budgets.

Retention: then the million-event store is pruned of every event older than the current hour
(``prune_events``) while 2 writer processes record one event per transaction, 10 ms apart
(writers that never pause would hold SQLite's one write lock nearly all the time); it prints the
prune's time, its longest write-lock hold, the writers' slowest write and whether every summary
by model, task and day over the 60 days is the same after as before.
"""

from __future__ import annotations

import argparse
import multiprocessing
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
from lobstore.repositories.costs.common import floor_hour  # noqa: E402

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


BUDGETS = (
    {"scope": "fleet", "period": "day"},
    {"scope": "model", "target": MODELS[0], "period": "day"},
    {"scope": "agent", "target": "lobster-swe-t1", "period": "week"},
    {"scope": "task_type", "target": "swe", "period": "month"},
    {"scope": "task", "target": "T500", "period": "total"},
)


def budget_rates(folder: str, events: list[dict], rounds: int = 3) -> dict[str, tuple[float, float]]:
    """Events/s without budgets and with 5, in batches of 1,000 and one event at a time: the
    best of ``rounds`` rounds, the two stores taking turns (the machine is shared: the best is
    the least disturbed)."""
    single = events[:max(1, len(events) // 20)]
    stores = {}
    for label, budgets in (("none", ()), ("5 budgets", BUDGETS)):
        stores[label] = store = open_store(f"sqlite:///{folder}/budgets-{len(budgets)}.db")
        with store.transaction() as tx:
            for n in range(TASKS):
                tx.tasks.create(name=f"task {n}", type="swe" if n % 2 else "research")
        for budget in budgets:
            store.budgets.create(**budget, limit_usd=10_000_000)
    best = {label: (0.0, 0.0) for label in stores}
    for r in range(rounds):
        for label, store in stores.items():
            batch = [{**e, "request_id": f"{r}-{e['request_id']}"} for e in events]
            batched = ingest_lobstore(store, batch)
            start = time.perf_counter()
            for event in single:
                store.costs.record(**{**event, "request_id": f"one-{r}-{event['request_id']}"})
            one_s = time.perf_counter() - start
            best[label] = (max(best[label][0], len(events) / batched), max(best[label][1], len(single) / one_s))
    assert stores["5 budgets"].budgets.alerts() == [], "a budget was crossed: the bench measures the steady state"
    for store in stores.values():
        store.close()
    return best


WRITER_PAUSE = 0.01  # each writer: one event, then 10 ms (~100 events/s: a busy fleet, not a saturated disk)


def writer(url: str, stop, results) -> None:
    """One event per transaction until told to stop; reports each write's (end time, seconds)."""
    writes = []
    with open_store(url, migrate=False) as store:
        while not stop.is_set():
            start = time.time()
            store.costs.record(model=MODELS[len(writes) % 3], input_tokens=1000, output_tokens=100)  # no task
            writes.append((time.time(), time.time() - start))
            time.sleep(WRITER_PAUSE)
    results.put(writes)


def summaries(store, since, until) -> dict:
    """Every day's totals by model and by task, and the whole range's by task (what prune must keep)."""
    out = {"days": store.costs.daily_by_model(since=since, until=until)}
    for group_by in ("model", "task", "day"):
        out[group_by] = store.costs.summary(since=since, until=until, group_by=group_by).groups
    out["T500"] = store.costs.for_task("T500")
    return out


def prune_while_writing(url: str) -> dict:
    with open_store(url) as store:
        horizon = floor_hour(utcnow())
        since = horizon - timedelta(days=61)
        before = summaries(store, since, horizon)
        stop, results = multiprocessing.Event(), multiprocessing.Queue()
        writers = [multiprocessing.Process(target=writer, args=(url, stop, results)) for _ in range(2)]
        for process in writers:
            process.start()
        time.sleep(3.0)  # the writers alone: their baseline
        start = time.time()
        progress = store.costs.prune_events(horizon, actor="bench")
        end = time.time()
        time.sleep(1.0)
        stop.set()
        written = [w for _ in writers for w in results.get(timeout=60)]
        for process in writers:
            process.join(timeout=30)
        after = summaries(store, since, horizon)
    alone = sorted(s for t, s in written if t < start)
    during = sorted(s for t, s in written if start <= t <= end)
    return {"events": progress.events, "batches": progress.batches, "seconds": end - start,
            "longest_hold_ms": progress.longest_hold_ms, "identical": before == after,
            "alone": (len(alone), _p99_ms(alone), alone[-1] * 1000 if alone else 0),
            "during": (len(during), _p99_ms(during), during[-1] * 1000 if during else 0)}


def _p99_ms(values: list[float]) -> float:
    return values[int(len(values) * 0.99)] * 1000 if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--budget-events", type=int, default=100_000)
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
        print("pruning while 2 writers write ...", file=sys.stderr)
        pruned = prune_while_writing(f"sqlite:///{lib_path}")
        print(f"budgets: {args.budget_events:,} events without and with 5 budgets ...", file=sys.stderr)
        rates = budget_rates(folder, make_events(args.budget_events, seed=11))

    lib_rate, raw_rate = args.events / lib_s, args.events / raw_s
    print(f"\nSQLite, {args.events:,} cost events in batches of {BATCH:,} (synchronous=FULL, WAL)")
    print(f"  ingest, lobstore record_many   {lib_rate:>10,.0f} events/s  ({lib_s:.1f} s)")
    print(f"  ingest, raw sqlite3 executemany{raw_rate:>10,.0f} events/s  ({raw_s:.1f} s)")
    print(f"  lobstore / raw                 {lib_rate / raw_rate:>10.0%}   (aim: at least 33%)")
    print(f"  30-day summary by model        {summary_ms:>10.1f} ms median of 20 "
          f"({summary.totals.events:,} events in range, {len(summary.groups)} groups; aim < 200 ms)")
    print(f"  one task's total (T500)        {task_ms:>10.2f} ms median of 20 "
          f"({task.totals.events:,} events; aim < 5 ms)")
    (none_batch, none_one), (five_batch, five_one) = rates["none"], rates["5 budgets"]
    print(f"\nBudgets, {args.budget_events:,} events in batches of {BATCH:,}; "
          f"{max(1, args.budget_events // 20):,} one per transaction")
    print(f"  batches, no budget / 5 budgets {none_batch:>10,.0f} / {five_batch:,.0f} events/s  "
          f"({five_batch / none_batch:.2f}; aim >= 0.8)")
    print(f"  one event, no budget / 5       {none_one:>10,.0f} / {five_one:,.0f} events/s  "
          f"({five_one / none_one:.2f}; aim >= 0.8)")
    print(f"\nPrune of {pruned['events']:,} events (all older than this hour) while 2 writer processes write")
    print(f"  time                           {pruned['seconds']:>10.1f} s in {pruned['batches']:,} batches")
    print(f"  longest write-lock hold        {pruned['longest_hold_ms']:>10.1f} ms (aim <= ~100 ms)")
    for phase in ("alone", "during"):
        count, p99, worst = pruned[phase]
        print(f"  writers {phase + ':':8} writes, p99, max {count:>7,} / {p99:.1f} / {worst:.1f} ms")
    print(f"  summaries identical after      {'yes' if pruned['identical'] else 'NO':>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
