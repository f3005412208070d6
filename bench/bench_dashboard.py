"""Dashboard and change-feed benchmark: server time per dashboard page at scale, and how long
an event takes from its commit to the clients of 50 open streams.

    python bench/bench_dashboard.py [--tasks 100000] [--events 1000000] [--url postgresql://...]
                                    [--streams 50] [--deliveries 200] [--reuse]

1. Fills a store (a SQLite file in a temporary folder, or the empty database at ``--url``) with
   ``--tasks`` tasks and ``--events`` cost events (bench_backup.fill), plus a few findings.
2. Renders each dashboard page through the WSGI app in this process (no network: the server's
   own time), a warm-up and then ``--runs`` times; prints the median and the slowest.
3. Serves the app on cheroot on a loopback port, opens ``--streams`` event streams with the
   client's iterator (lobstore.client.Client.events), commits ``--deliveries`` events one at a
   time and prints the delivery latency (the write call → each client has it; the commit included) p50/p99/max.

The clients run in this process beside the server: on a small, shared machine the figures
include their share of the CPU.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backup import MODELS, fill  # noqa: E402 - tasks, shared

from cheroot import wsgi  # noqa: E402

from lobstore import open_store  # noqa: E402
from lobstore.adapters.http import make_app  # noqa: E402
from lobstore.client import Client  # noqa: E402
from lobstore.clock import to_iso, utcnow  # noqa: E402

PAGES = ("/", "/ui/tasks", "/ui/tasks?status=queued&type=swe", "/ui/tasks?after=50000", "/ui/tasks/T{mid}",
         "/ui/costs", "/ui/audits", "/ui/jobs", "/ui/broker")


def fill_costs(store, tasks: int, events: int) -> None:
    """Cost events spread over the last 30 days (as a month of work leaves them)."""
    began, now = time.monotonic(), utcnow()
    step = timedelta(days=30) / max(events, 1)
    for start_at in range(0, events, 1000):
        store.costs.record_many([
            {"task_id": 1 + (n % max(tasks, 1)), "model": MODELS[n % 3], "agent": f"lobster-{n % 50}",
             "input_tokens": 1000 + n % 997, "output_tokens": 200 + n % 101, "request_id": f"req-{n}",
             "created_at": to_iso(now - timedelta(days=30) + step * n)}
            for n in range(start_at, min(start_at + 1000, events))
        ])
    print(f"  {events:,} cost events over 30 days in {time.monotonic() - began:.0f} s", flush=True)


def call(app, path: str) -> tuple[str, float]:
    route, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": route, "QUERY_STRING": query, "SERVER_NAME": "bench",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}
    status: list[str] = []
    began = time.perf_counter()
    body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    took = time.perf_counter() - began
    if not status[0].startswith("200"):
        raise SystemExit(f"{path}: {status[0]} {body[:300]!r}")
    return status[0], took


def bench_pages(store, runs: int, tasks: int) -> None:
    app = make_app(store)
    print(f"\nserver time per page ({runs} runs after a warm-up):")
    for page in PAGES:
        path = page.format(mid=max(1, tasks // 2))
        call(app, path)
        times = sorted(call(app, path)[1] for _ in range(runs))
        print(f"  {path:36} median {statistics.median(times) * 1000:7.1f} ms   slowest {times[-1] * 1000:7.1f} ms",
              flush=True)


def bench_delivery(store, streams: int, deliveries: int) -> None:
    app = make_app(store, max_streams=streams + 4)
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=streams + 16, max=streams + 16, shutdown_timeout=5)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.bind_addr[1]}"
    task = store.tasks.create(name="delivery probe").ref
    sent: dict[str, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    ready = threading.Semaphore(0)  # released once per stream that has its warm-up event
    opened = []

    def follow() -> None:
        stream = Client(url).events(type="note", task=task)
        opened.append(stream)
        got = 0
        first = True
        for event in stream:
            now = time.perf_counter()
            if first:  # the warm-up event: the stream is open
                first = False
                ready.release()
                continue
            with lock:
                latencies.append(now - sent[event["detail"]])
            got += 1
            if got == deliveries:
                return

    clients = [threading.Thread(target=follow, daemon=True) for _ in range(streams)]
    for client in clients:
        client.start()
    time.sleep(1.0)  # the streams connect
    store.events.add(task, "note", detail="warm-up")
    deadline = time.monotonic() + 120
    opened_streams = sum(ready.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in range(streams))
    if opened_streams < streams:
        print(f"  only {opened_streams} of {streams} streams opened in time", flush=True)
    for n in range(deliveries):
        sent[f"probe {n}"] = time.perf_counter()  # from the write call: its commit is included
        store.events.add(task, "note", detail=f"probe {n}")
        time.sleep(0.02)
    for client in clients:
        client.join(timeout=60)
    for stream in opened:
        stream.close()
    store.backend.changes.close()
    server.stop()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000  # noqa: E731
    print(f"\nevent delivery, write call → client, {streams} open streams, {deliveries} events "
          f"({len(latencies):,} deliveries): p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--url", help="an empty database (default: a SQLite file in a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="use what --url already holds")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--deliveries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'bench.db'}"
        print(f"filling {url}: {args.tasks:,} tasks, {args.events:,} cost events", flush=True)
        fill(url, args.tasks, 0, reuse=args.reuse)
        with open_store(url) as store:
            if not args.reuse:
                fill_costs(store, args.tasks, args.events)
            if not store.audits.count_by("severity"):
                store.audits.submit("bench", [{"severity": ("info", "warning", "critical")[n % 3],
                                               "title": f"finding {n}"} for n in range(30)])
            for n in range(0, 200, 3):
                store.tasks.update(1 + n, status="active", assigned_to=f"lobster-{n}")
            bench_pages(store, args.runs, args.tasks)
            bench_delivery(store, args.streams, args.deliveries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
