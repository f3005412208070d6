"""Operations benchmark: backups under writers, restore, the cost of a /metrics scrape, and
throughput with the access log on and off.

    python bench/bench_backup.py [--tasks 100000] [--events 1000000] [--url postgresql://...]

1. Fills a store (a SQLite file in a temporary folder, or the empty database at ``--url``) with
   ``--tasks`` tasks (each with its created event) and ``--events`` cost events.
2. Four writer threads create tasks (one transaction each) for a few seconds without a backup,
   then while ``nice -n 10 lobstore backup`` runs in a process of its own (as serve's
   scheduled backups run it): prints the backup's time and size and the writers' longest and
   p99 transaction time in both periods (the longest stall a backup adds). Then once more
   with the backup in the writers' process (the library call), for comparison. On PostgreSQL
   both methods run: pg_dump and the logical copy into SQLite.
3. Restores the backup (into a new SQLite file; into PostgreSQL with ``--restore-url``).
4. Times what a /metrics scrape reads from the database, at the filled store and again after
   raw inserts bring ``tasks`` to ``--scrape-tasks`` rows (default 1,000,000).
5. Calls the WSGI app in a loop with the access log on (text and JSON, to a file) and off,
   counting CPU time (a shared machine's load does not count against it), then
   serves the store with ``lobstore serve`` and drives GET one task at concurrency 8 the same
   three ways; alternating runs, the median req/s of each.

Figures are noisy on a shared machine: the client and the server share its cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from lobstore import open_store
from lobstore.adapters.metrics import Metrics
from lobstore.maintenance.archive import read_manifest
from lobstore.maintenance.backup import backup
from lobstore.maintenance.restore import restore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import drive, start  # noqa: E402 - the HTTP load generator, shared

MODELS = ("claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5")
WRITERS = 4
QUIET_SECONDS = 4.0


def fill(url: str, tasks: int, events: int, reuse: bool = False) -> None:
    began = time.monotonic()
    with open_store(url) as store:
        if store.tasks.count():
            if not reuse:
                raise SystemExit(f"{url} already holds tasks: give an empty database (or --reuse it)")
            print(f"  using what {url} holds: {store.tasks.count():,} tasks", flush=True)
            return
        for start_at in range(0, tasks, 1000):
            with store.transaction() as tx:
                for n in range(start_at, min(start_at + 1000, tasks)):
                    tx.tasks.create(name=f"bench task {n}", type="swe", repos=["acme/web"], tags=["bench"])
        print(f"  {tasks:,} tasks in {time.monotonic() - began:.0f} s", flush=True)
        began = time.monotonic()
        for start_at in range(0, events, 1000):
            store.costs.record_many([
                {"task_id": 1 + (n % max(tasks, 1)), "model": MODELS[n % 3], "agent": f"lobster-{n % 50}",
                 "input_tokens": 1000 + n % 997, "output_tokens": 200 + n % 101, "request_id": f"req-{n}"}
                for n in range(start_at, min(start_at + 1000, events))
            ])
        print(f"  {events:,} cost events in {time.monotonic() - began:.0f} s", flush=True)


class Writers:
    """Threads creating a task per transaction; every transaction's time is kept with when it
    began, so a period's latencies can be picked out."""

    def __init__(self, store) -> None:
        self.store = store
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(w,)) for w in range(WRITERS)]

    def _run(self, w: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            began = time.monotonic()
            with self.store.transaction() as tx:
                task = tx.tasks.create(name=f"writer {w} task {n}")
                tx.events.add(task.id, "note", data={"n": n})
            self.samples.append((began, time.monotonic() - began))

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def between(self, start: float, end: float) -> str:
        times = sorted(took for began, took in self.samples if start <= began <= end)
        if not times:
            return "no writes"
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        return (f"{len(times) / (end - start):,.0f} writes/s, p99 {p99 * 1000:.1f} ms, "
                f"longest {times[-1] * 1000:.1f} ms")


def bench_backups(url: str, folder: Path, restore_url: str | None) -> None:
    """Each method as `lobstore backup` runs it (a process of its own, as the scheduled backups
    of serve do too), and once in the writers' own process for comparison (the GIL)."""
    methods = ["auto"] if url.startswith("sqlite") else ["pg_dump", "sqlite"]
    runs = [(method, "child") for method in methods] + [(methods[0], "in-process")]
    with open_store(url) as store:
        for method, where in runs:
            dest = folder / f"bench-{method}-{where}.tar.gz"
            with Writers(store) as writers:
                quiet_from = time.monotonic()
                time.sleep(QUIET_SECONDS)
                quiet_to = began = time.monotonic()
                if where == "child":  # as serve's scheduled backups run it: nice -n 10
                    subprocess.run(["nice", "-n", "10", str(Path(sys.executable).with_name("lobstore")), "backup",
                                    str(dest), "--method", method], env={**os.environ, "LOBSTORE_URL": url},
                                   check=True, capture_output=True)
                else:
                    backup(url, dest, method=method)
                ended = time.monotonic()
            manifest = read_manifest(dest)
            print(f"backup ({manifest['method']}, {where}): {ended - began:.1f} s, "
                  f"{dest.stat().st_size / 1e6:,.1f} MB compressed from {manifest['payload']['bytes'] / 1e6:,.1f} MB")
            print(f"  writers without a backup: {writers.between(quiet_from, quiet_to)}")
            print(f"  writers during the backup: {writers.between(began, ended)}", flush=True)
            if where != "child":
                continue
            if manifest["payload"]["kind"] == "pg_dump" and not restore_url:
                print("  restore: skipped (a pg_dump backup restores into PostgreSQL: give --restore-url)")
                continue
            target = restore_url if manifest["payload"]["kind"] == "pg_dump" else \
                f"sqlite:///{folder / f'restored-{method}.db'}"
            done = restore(dest, target)
            print(f"  restore into {target.split(':')[0]}: {done.seconds:.1f} s, checked against {done.checked}",
                  flush=True)


def scrape_cost(url: str, label: str) -> None:
    with open_store(url) as store:
        metrics = Metrics(store, cache_seconds=0)
        times, grouped = [], []
        for _ in range(5):
            began = time.perf_counter()
            store.tasks.count_by("status")
            grouped.append(time.perf_counter() - began)
            began = time.perf_counter()
            metrics.exposition()
            times.append(time.perf_counter() - began)
        count = store.tasks.count()
    print(f"/metrics at {count:,} tasks ({label}): grouped count by status {statistics.median(grouped) * 1000:.1f} ms, "
          f"whole scrape {statistics.median(times) * 1000:.1f} ms (median of 5; cached 15 s when served)", flush=True)


def grow_tasks(url: str, target: int) -> None:
    """Raw inserts (a benchmark shortcut, not how tasks are made) up to ``target`` tasks."""
    with open_store(url) as store:
        have = store.tasks.count()
        if have >= target:
            return
        began = time.monotonic()
        with store.backend.writing() as conn:
            statuses = "CASE x % 5 WHEN 0 THEN 'completed' WHEN 1 THEN 'active' WHEN 2 THEN 'failed' ELSE 'queued' END"
            if store.backend.name == "sqlite":
                conn.exec_driver_sql(
                    "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ?) "
                    "INSERT INTO tasks (name, type, status, priority, repos, tags, requires_qa, created_at, "
                    f"updated_at, version, metadata) SELECT 'raw ' || x, 'swe', {statuses}, 'normal', '[]', '[]', 0, "
                    "datetime('now'), datetime('now'), 1, '{}' FROM s", (target - have,))
            else:
                conn.execute(sa.text(
                    "INSERT INTO tasks (name, type, status, priority, repos, tags, requires_qa, created_at, "
                    f"updated_at, version, metadata) SELECT 'raw ' || x, 'swe', {statuses}, 'normal', '[]', '[]', "
                    "false, now(), now(), 1, '{}' FROM generate_series(1, :n) AS x"), {"n": target - have})
        print(f"  (raw inserts up to {target:,} tasks: {time.monotonic() - began:.0f} s)", flush=True)


def access_log_cost(url: str, folder: Path, requests: int) -> None:
    lobstore_bin = Path(sys.executable).with_name("lobstore")
    variants = {"access log off": ["--no-access-log"], "access log text": [],
                "access log json": ["--log-format", "json"]}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    servers = {}
    try:
        for name, flags in variants.items():
            servers[name] = start([str(lobstore_bin), "serve", "--db", url, "--port", "0", *flags],
                                  folder / f"{name.replace(' ', '-')}.log")
        for name, (_, port) in servers.items():  # warm up
            drive(port, 8, 400, lambda n, i: ("GET", f"/api/tasks/T{1 + (n * 7 + i) % 100}", None))
        for _ in range(5):
            for name, (_, port) in servers.items():
                got = drive(port, 8, requests, lambda n, i: ("GET", f"/api/tasks/T{1 + (n * 7 + i) % 100}", None))
                rates[name].append(got["rps"])
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    off = statistics.median(rates["access log off"])
    print(f"GET one task over HTTP, concurrency 8, {requests:,} requests x 5 runs each, alternating:")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:<16} {median:>7,.0f} req/s  ({median / off:.1%} of off; runs: "
              f"{', '.join(f'{v:,.0f}' for v in values)})")


def access_log_cost_in_process(url: str, folder: Path, requests: int) -> None:
    """The same comparison without the network and the client: the WSGI app and its RequestLog
    called in a loop, logging to a file. Less noise; the share is of the whole request."""
    import io
    import logging

    from lobstore.adapters.access import RequestLog
    from lobstore.adapters.http import make_app
    from lobstore.adapters.logs import JsonFormatter, RequestIdFilter, TextFormatter

    logger = logging.getLogger("lobstore")
    logger.setLevel(logging.INFO)
    with open_store(url) as store:
        metrics = Metrics(store)
        app = make_app(store, metrics=metrics)
        variants = {"access log off": (False, None), "access log text": (True, TextFormatter()),
                    "access log json": (True, JsonFormatter())}
        rates: dict[str, list[float]] = {name: [] for name in variants}

        def call(wsgi, n: int) -> None:
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/api/tasks/T{1 + n % 100}", "QUERY_STRING": "",
                       "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                       "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
                       "wsgi.errors": sys.stderr}
            b"".join(wsgi(environ, lambda status, headers, exc_info=None: None))

        for _ in range(5):
            for name, (on, formatter) in variants.items():
                handler = logging.FileHandler(folder / "access.log")
                handler.addFilter(RequestIdFilter())
                if formatter:
                    handler.setFormatter(formatter)
                logger.addHandler(handler)
                wsgi = RequestLog(app, metrics=metrics, access_log=on)
                began = time.process_time()  # CPU time: what the requests cost, whatever else runs
                for n in range(requests):
                    call(wsgi, n)
                rates[name].append(requests / (time.process_time() - began))
                logger.removeHandler(handler)
                handler.close()
    off = statistics.median(rates["access log off"])
    print(f"GET one task through the WSGI app in-process, {requests:,} requests x 5 runs each, alternating "
          "(requests per CPU second, and the CPU time of one):")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:<16} {median:>7,.0f} req/s  {1e6 / median:>5.0f} µs  ({median / off:.1%} of off)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--url", help="an empty PostgreSQL database (default: a SQLite file in a temporary folder)")
    parser.add_argument("--restore-url", help="an empty PostgreSQL database to restore a pg_dump backup into")
    parser.add_argument("--reuse", action="store_true", help="--url already holds a filled store: do not fill it")
    parser.add_argument("--scrape-tasks", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=3000, help="per access-log run (default 3000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.url or f"sqlite:///{folder / 'bench.db'}"
        print(f"{url.split(':')[0]}; {os.cpu_count()} CPUs shared with whatever else runs here")
        print(f"filling: {args.tasks:,} tasks, {args.events:,} cost events", flush=True)
        fill(url, args.tasks, args.events, args.reuse)
        bench_backups(url, folder, args.restore_url)
        scrape_cost(url, "as filled")
        access_log_cost_in_process(url, folder, args.requests)
        access_log_cost(url, folder, args.requests)
        grow_tasks(url, args.scrape_tasks)
        scrape_cost(url, "after raw inserts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
