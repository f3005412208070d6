"""HTTP benchmark: `lobstore serve` against a do-nothing WSGI app on the same cheroot settings.

    python bench/bench_http.py [--requests 2000] [--threads 32] [--work-slots 1] [--cpu off] [--bare-on-one-core]
                               [--db postgresql://...] [--auth]

Starts `lobstore serve` (SQLite file in a temporary folder) and a minimal cheroot app that
only returns a small JSON body (or, for a POST, makes a create's two inserts on raw sqlite3
with lobstore's pragmas: the baseline of the create row), each in its own process, and drives both from this process
over loopback with keep-alive connections at concurrency 1, 8 and 32, in alternating rounds
(lobstore, the bare app, lobstore...: a shared machine's speed drifts). Prints requests per
second, p50/p99 latency and the server's CPU per request (from /proc) per operation, and
lobstore's throughput as a share of the minimal app's in the same rounds. ``--db URL`` serves an
empty database of your choosing (PostgreSQL) instead of a new SQLite file. Then the hostile part (``--hostile-only`` runs just that): /health and GET one task
while 256 idle connections and 64 clients sending one byte a second are held open, and the
server's memory while 16 clients each send a 500 MB header. ``--auth`` serves with ``--auth required`` and sends a credential with every request,
to measure what authentication costs. ``--cpu`` is serve's (default: its own, auto: the request
threads on one core); ``--bare-on-one-core`` keeps the bare app's process on one core too, the one
lobstore's request threads use, to set like beside like. The client shares the machine's cores with the server: read the figures as relative.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 32)
SEED_TASKS = 200
START_TIMEOUT = 30.0

Request = tuple[str, str, bytes | None]  # method, path, body


# -- the servers ------------------------------------------------------------------------------
def minimal_server(threads: int, cpu: int | None) -> None:
    """Run in a child process: cheroot, configured as `lobstore serve` is, around a tiny app."""
    from cheroot import wsgi

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before any thread starts: every thread inherits it

    from lobstore.adapters import httpserver

    import sqlite3

    from lobstore.backends.sqlite import PRAGMAS

    body = b'{"status":"ok","id":1,"task_id":"T1"}'
    local = threading.local()

    def insert_two_rows() -> None:
        """What a create writes, on raw sqlite3 with lobstore's pragmas: a task and its event."""
        if not hasattr(local, "db"):
            local.db = sqlite3.connect(os.environ["BENCH_RAW_DB"], isolation_level=None, timeout=5)
            for pragma in PRAGMAS:
                local.db.execute(pragma)
            local.db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT, status TEXT, "
                             "created_at TEXT, data TEXT)")
            local.db.execute("CREATE TABLE IF NOT EXISTS e (id INTEGER PRIMARY KEY, task_id INTEGER, "
                             "event_type TEXT, created_at TEXT, data TEXT)")
        db = local.db
        db.execute("BEGIN IMMEDIATE")
        task = db.execute("INSERT INTO t (name, status, created_at, data) VALUES ('bench task', 'queued', "
                          "datetime('now'), '{}')").lastrowid
        db.execute("INSERT INTO e (task_id, event_type, created_at, data) VALUES (?, 'created', datetime('now'), '{}')",
                   (task,))
        db.execute("COMMIT")

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":  # the bare app doing a create's two inserts
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            insert_two_rows()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    httpd = wsgi.Server((HOST, 0), app, numthreads=threads, max=threads,
                        request_queue_size=httpserver.LISTEN_BACKLOG, timeout=httpserver.IDLE_TIMEOUT)
    httpd.keep_alive_conn_limit = httpserver.MAX_CONNECTIONS
    httpd.prepare()
    print(f"listening on {HOST}:{httpd.bind_addr[1]}", flush=True)
    httpd.serve()


def start(command: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    out = log.open("w")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        # lobstore's line names its database first (a PostgreSQL URL has a host:port too).
        match = re.search(rf"(?:http://|listening on ){re.escape(HOST)}:(\d+)", log.read_text())
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(command)}\n{log.read_text()}")


# -- the client -------------------------------------------------------------------------------
AUTH_HEADERS: dict[str, str] = {}  # with --auth: the credential every request sends


def drive(port: int, concurrency: int, total: int, make: Callable[[int, int], Request]) -> dict[str, float]:
    """Send ``total`` requests over ``concurrency`` keep-alive connections; time each one."""
    per_worker = total // concurrency
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures: list[str] = []
    barrier = threading.Barrier(concurrency + 1)

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.connect()
        headers = {"Content-Type": "application/json", **AUTH_HEADERS}
        barrier.wait()
        for i in range(per_worker):
            method, path, body = make(n, i)
            began = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            latencies[n].append(time.perf_counter() - began)
            if response.status >= 300:
                failures.append(f"{method} {path} -> {response.status}")
        conn.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    for thread in workers:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[:3]}")
    return summary([x for chunk in latencies for x in chunk], elapsed)


def summary(latencies: list[float], elapsed: float) -> dict[str, Any]:
    every = sorted(latencies)
    return {
        "rps": len(every) / elapsed,
        "p50": statistics.median(every) * 1000,
        "p99": every[min(len(every) - 1, int(len(every) * 0.99))] * 1000,
        "latencies": every,
        "elapsed": elapsed,
    }


ROUNDS = 4  # lobstore and the bare app take turns, so both meet the machine in the same state


def process_cpu(pid: int) -> float:
    """CPU seconds a process has used, every thread counted (/proc/PID/stat: utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paired(lob: tuple[int, int], bare_app: tuple[int, int], concurrency: int, total: int,
           make: Callable[[int, int], Request], bare: Callable[[int, int], Request]) -> tuple[dict[str, Any], ...]:
    """lobstore and the bare app (each a ``(port, pid)``), driven in alternating rounds of
    ``total / ROUNDS`` requests: on a shared machine whose speed drifts (a VM's neighbours), each
    ratio compares like times. Each summary has ``cpu_us``: the server's CPU per request."""
    runs: dict[int, list[dict[str, Any]]] = {lob[0]: [], bare_app[0]: []}
    cpu = {lob[0]: 0.0, bare_app[0]: 0.0}
    for _round in range(ROUNDS):
        for (port, pid), making in ((lob, make), (bare_app, bare)):
            before = process_cpu(pid)
            runs[port].append(drive(port, concurrency, max(concurrency, total // ROUNDS), making))
            cpu[port] += process_cpu(pid) - before
    out = []
    for port in (lob[0], bare_app[0]):
        got = summary([x for run in runs[port] for x in run["latencies"]], sum(run["elapsed"] for run in runs[port]))
        got["cpu_us"] = cpu[port] / len(got["latencies"]) * 1e6
        out.append(got)
    return tuple(out)


# -- hostile clients --------------------------------------------------------------------------
IDLE_CLIENTS = 256
SLOW_CLIENTS = 64
HUGE_HEADER_CLIENTS = 16
HUGE_HEADER_BYTES = 500 * 1024 * 1024


def hostile(port: int, pid: int, probes: int) -> None:
    import socket

    import psutil

    stop = threading.Event()
    idle = [socket.create_connection((HOST, port)) for _ in range(IDLE_CLIENTS)]
    slow_request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"

    def one_byte_a_second() -> None:
        socks = [socket.create_connection((HOST, port)) for _ in range(SLOW_CLIENTS)]
        sent = [0] * SLOW_CLIENTS
        while not stop.wait(1.0):
            for n, sock in enumerate(socks):
                try:
                    sock.send(slow_request[sent[n] % len(slow_request):][:1])
                    sent[n] += 1
                except OSError:  # answered 408 at the read deadline and closed: come back
                    sock.close()
                    socks[n] = socket.create_connection((HOST, port))
        for sock in socks:
            sock.close()

    dribbler = threading.Thread(target=one_byte_a_second)
    dribbler.start()
    try:
        time.sleep(2.0)
        for name, path in (("/health", "/health"), ("GET one task", "/api/v1/tasks/T1")):
            got = drive(port, 4, probes, lambda n, i, path=path: ("GET", path, None))
            print(f"{name:<14} with {IDLE_CLIENTS} idle + {SLOW_CLIENTS} one-byte-a-second clients: "
                  f"{got['rps']:.0f} req/s, p50 {got['p50']:.2f} ms, p99 {got['p99']:.2f} ms", flush=True)
    finally:
        stop.set()
        dribbler.join()
        for sock in idle:
            sock.close()

    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak = [before]
    refused = []

    def huge_header() -> None:
        chunk = b"a" * (1024 * 1024)
        with socket.create_connection((HOST, port), timeout=30) as sock:
            sent = 0
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nX-Huge: ")
                while sent < HUGE_HEADER_BYTES:
                    sent += sock.send(chunk)
            except OSError:
                pass
            try:
                refused.append(sock.recv(200).split(b"\r\n")[0].decode())
            except OSError:
                refused.append("reset")

    senders = [threading.Thread(target=huge_header) for _ in range(HUGE_HEADER_CLIENTS)]
    for thread in senders:
        thread.start()
    while any(thread.is_alive() for thread in senders):
        peak.append(process.memory_info().rss)
        time.sleep(0.05)
    after = process.memory_info().rss
    print(f"{HUGE_HEADER_CLIENTS} clients sending {HUGE_HEADER_BYTES >> 20} MB headers: server RSS "
          f"{before / 2**20:.0f} MB before, peak {max(peak) / 2**20:.0f} MB, {after / 2**20:.0f} MB after; "
          f"answers: {sorted(set(refused))}", flush=True)


def operations(task_count: int) -> dict[str, Callable[[int, int], Request]]:
    create_body = json.dumps({"name": "bench task", "type": "swe", "repos": ["acme/web"], "actor": "bench"}).encode()
    statuses = [json.dumps({"status": s, "actor": "bench"}).encode() for s in ("blocked", "active")]
    return {
        # Each worker reads and patches its own tasks, as lobsters do.
        "GET one task": lambda n, i: ("GET", f"/api/v1/tasks/T{1 + (n * 7 + i) % task_count}", None),
        "list of 50": lambda n, i: ("GET", "/api/v1/tasks?limit=50&status=active,blocked,queued", None),
        "create": lambda n, i: ("POST", "/api/v1/tasks", create_body),
        "PATCH status": lambda n, i: ("PATCH", f"/api/v1/tasks/T{1 + n}", statuses[i % 2]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per operation and concurrency (default 2000)")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: lobstore serve's)")
    parser.add_argument("--work-slots", type=int, default=None,
                        help="lobstore serve's --work-slots (default: serve's own choice)")
    parser.add_argument("--db", metavar="URL", help="serve this (empty) database instead of a new SQLite file, "
                                                     "e.g. a PostgreSQL URL")
    parser.add_argument("--cpu", help="lobstore serve's --cpu (default: serve's own, auto)")
    parser.add_argument("--bare-on-one-core", action="store_true",
                        help="keep the bare app on one core too (the one lobstore's request threads use)")
    parser.add_argument("--minimal-cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--auth", action="store_true", help="serve with --auth required, send a credential")
    parser.add_argument("--hostile-only", action="store_true", help="only the hostile-clients part")
    parser.add_argument("--minimal-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from lobstore.adapters.server import DEFAULT_THREADS

    threads = args.threads or DEFAULT_THREADS
    if args.minimal_server:
        minimal_server(threads, args.minimal_cpu)
        return 0

    lobstore_bin = Path(sys.executable).with_name("lobstore")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db_url = args.db or f"sqlite:///{folder / 'bench.db'}"
        servers = []
        auth = []
        if args.auth:
            made = subprocess.run([str(lobstore_bin), "--db", db_url, "credentials", "create", "bench",
                                   "--scope", "write"], capture_output=True, text=True, check=True)
            AUTH_HEADERS["Authorization"] = f"Bearer {made.stdout.strip()}"
            auth = ["--auth", "required"]
        slots = ["--work-slots", str(args.work_slots)] if args.work_slots else []
        slots += ["--cpu", args.cpu] if args.cpu else []
        try:
            lob, lob_port = start([str(lobstore_bin), "serve", "--db", db_url, "--port", "0",
                                   "--threads", str(threads), *auth, *slots], folder / "lobstore.log")
            servers.append(lob)
            os.environ["BENCH_RAW_DB"] = str(folder / "raw.db")
            core = re.search(r"on CPU (\d+)", (folder / "lobstore.log").read_text())
            pin = ["--minimal-cpu", core.group(1)] if args.bare_on_one_core and core else []
            if args.bare_on_one_core and not core:
                raise SystemExit("--bare-on-one-core: lobstore serve keeps no core (--cpu off, or one CPU)")
            mini, mini_port = start([sys.executable, __file__, "--minimal-server", "--threads", str(threads), *pin],
                                    folder / "minimal.log")
            servers.append(mini)

            # Seed: enough tasks for reads and every worker's own task to patch, all active.
            seed = drive(lob_port, 1, SEED_TASKS, lambda n, i: operations(1)["create"](n, i))
            drive(lob_port, 1, max(CONCURRENCY), lambda n, i: ("PATCH", f"/api/v1/tasks/T{1 + i}",
                                                               b'{"status": "active"}'))
            started = re.search(r"\((\d+ threads, .*)\)", (folder / "lobstore.log").read_text())
            print(f"lobstore serve: {'SQLite file' if not args.db else db_url.split(':')[0]} "
                  f"({started.group(1) if started else '?'}), auth {'required' if args.auth else 'off'}; "
                  f"bare app {'on that core too' if pin else 'on any core'}; "
                  f"{args.requests} requests per row; "
                  f"{os.cpu_count()} CPUs shared by client and server; seeded {SEED_TASKS} tasks "
                  f"({seed['rps']:.0f} creates/s at concurrency 1)")
            print()
            if args.hostile_only:
                hostile(lob_port, lob.pid, args.requests)
                return 0
            header = (f"{'operation':<14} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu µs':>7}"
                      f"   {'minimal req/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs':>7}   {'ratio':>5}")
            print(header)
            print("-" * len(header))
            ops = operations(SEED_TASKS)
            for name, make in ops.items():
                # A create is set beside the bare app doing the same two inserts.
                bare: Callable[[int, int], Request] = ((lambda n, i: ("POST", "/", b"{}")) if name == "create"
                                                       else (lambda n, i: ("GET", "/", None)))
                for c in CONCURRENCY:
                    got, base = paired((lob_port, lob.pid), (mini_port, mini.pid), c, args.requests, make, bare)
                    print(f"{name:<14} {c:>4} {got['rps']:>8.0f} {got['p50']:>8.2f} {got['p99']:>8.2f}"
                          f" {got['cpu_us']:>7.0f}"
                          f"   {base['rps']:>13.0f} {base['p50']:>7.2f} {base['p99']:>7.2f} {base['cpu_us']:>7.0f}"
                          f"   {got['rps'] / base['rps']:>5.2f}", flush=True)
            print()
            hostile(lob_port, lob.pid, args.requests)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
