"""Claim benchmark: claims per second at 1, 8 and 32 claimers, against the bare SQL.

    python bench/bench_claim.py [--tasks 2000] [--claimers 1 8 32] [--url postgresql://...]

For each backend (a SQLite file in a temporary folder; and PostgreSQL when ``--url`` names an
empty database or one this script filled before) and each number of claimer threads:

- **lobstore**: ``--tasks`` queued tasks of mixed priority; the threads call
  ``store.tasks.claim(lobster=...)`` until it answers None. Each claim is one write
  transaction: the best row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), the database's clock,
  the versioned update and its ``claimed`` event.
- **bare SQL**: the same tasks again; the threads run one statement per transaction —
  ``UPDATE tasks SET status='active', ... WHERE id = (SELECT id ... ORDER BY priority rank,
  created_at, id LIMIT 1 [FOR UPDATE SKIP LOCKED]) RETURNING id`` — until it returns no row:
  the least a claim can cost, with no event and no lease logic.

Prints claims/s of both and their ratio; checks that every task was claimed exactly once.
Client threads and the database share the machine's cores: read the figures as relative.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from lobstore import open_store
from lobstore.store import Store

PRIORITIES = ("low", "normal", "high", "critical")
RANK = "CASE priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END"
BARE = {
    "postgresql": sa.text(
        "UPDATE tasks SET status = 'active', assigned_to = :lobster, assigned_at = statement_timestamp(), "
        "lease_expires_at = statement_timestamp() + interval '300 seconds', attempts = attempts + 1, "
        "version = version + 1, updated_at = statement_timestamp() "
        f"WHERE id = (SELECT id FROM tasks WHERE status = 'queued' ORDER BY {RANK}, created_at, id "
        "LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"),
    "sqlite": sa.text(
        "UPDATE tasks SET status = 'active', assigned_to = :lobster, assigned_at = datetime('now'), "
        "lease_expires_at = datetime('now', '+300 seconds'), attempts = attempts + 1, "
        "version = version + 1, updated_at = datetime('now') "
        f"WHERE id = (SELECT id FROM tasks WHERE status = 'queued' ORDER BY {RANK}, created_at, id "
        "LIMIT 1) RETURNING id"),
}


def refill(store: Store, count: int) -> None:
    with store.backend.writing() as conn:
        conn.execute(sa.text("DELETE FROM task_events"))
        conn.execute(sa.text("DELETE FROM tasks"))
    with store.transaction() as tx:
        for n in range(count):
            tx.tasks.create(name=f"task {n}", priority=PRIORITIES[n % 4])


def run(claimers: int, claim: Callable[[str], int | None]) -> tuple[float, list[int]]:
    """Claims per second of ``claimers`` threads calling ``claim`` until it answers None."""
    got: list[list[int]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []
    start = threading.Barrier(claimers + 1)

    def claimer(index: int) -> None:
        start.wait()
        try:
            while (task_id := claim(f"lobster-{index}")) is not None:
                got[index].append(task_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if errors:
        raise errors[0]
    every = [task_id for ids in got for task_id in ids]
    return len(every) / seconds, every


def bench(label: str, url: str, tasks: int, claimer_counts: list[int]) -> None:
    with open_store(url) as store:
        bare = BARE[store.backend.name]

        def lobstore_claim(lobster: str) -> int | None:
            task = store.tasks.claim(lobster=lobster)
            return None if task is None else task.id

        def bare_claim(lobster: str) -> int | None:
            with store.backend.writing() as conn:
                return conn.execute(bare, {"lobster": lobster}).scalar()

        print(f"\n{label}: {tasks:,} queued tasks per run")
        print(f"  {'claimers':>8}  {'lobstore claims/s':>18}  {'bare SQL claims/s':>18}  {'ratio':>6}")
        for claimers in claimer_counts:
            rates = {}
            for name, claim in (("lobstore", lobstore_claim), ("bare", bare_claim)):
                refill(store, tasks)
                rate, claimed = run(claimers, claim)
                if len(claimed) != tasks or len(set(claimed)) != tasks:
                    raise SystemExit(f"{name} at {claimers} claimers: {len(claimed)} claims of {len(set(claimed))} "
                                     f"tasks; expected each of {tasks} once")
                rates[name] = rate
            print(f"  {claimers:>8}  {rates['lobstore']:>18,.0f}  {rates['bare']:>18,.0f}  "
                  f"{rates['lobstore'] / rates['bare']:>6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000, help="queued tasks per run (default 2000)")
    parser.add_argument("--claimers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--url", help="a PostgreSQL database to run on as well (its tasks are deleted)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            bench("SQLite (a file)", f"sqlite:///{Path(folder) / 'claims.db'}", args.tasks, args.claimers)
    if args.url:
        bench("PostgreSQL", args.url, args.tasks, args.claimers)


if __name__ == "__main__":
    main()
