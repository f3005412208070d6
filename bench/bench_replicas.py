"""Replicas benchmark: several `lobstore serve` on one PostgreSQL database.

    python bench/bench_replicas.py --url postgresql://postgres@127.0.0.1:5432/DB [--requests 3000]

In a fresh schema of that database (dropped at the end):

1. **Create throughput** with 1, 2 and 3 replicas: ``--threads`` client threads send
   ``--requests`` creates round-robin over the replicas (keep-alive connections), and the
   script prints creates/s and p50/p99 latency, with the CPU each replica and PostgreSQL used.
2. **Cross-replica wake-up**: a change written through replica A wakes a waiter in another
   process (this one, on its own LISTEN connection): p50/p99/max of the delay.
3. **Takeover**: ``kill -9`` of the replica holding the broker-expiry duty, and the time until
   another replica's /health shows it holding the duty (``--takeover`` seconds between a
   standby's tries, default 1 here), ``--kills`` times.

Client, replicas and PostgreSQL share the machine's cores: read the figures as relative.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from lobstore import open_store

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
LOBSTORE = Path(sys.executable).with_name("lobstore")


class Replica:
    def __init__(self, url: str, takeover: float) -> None:
        self.proc = subprocess.Popen(
            [str(LOBSTORE), "serve", "--db", url, "--port", "0", "--no-access-log", "--takeover", str(takeover)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.port = 0
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            found = re.search(r"serving .* on http://[0-9.]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self.ready.set()

    def wait(self) -> Replica:
        if not self.ready.wait(START_TIMEOUT):
            raise SystemExit("a replica did not start")
        return self

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def get(self, path: str) -> dict:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


def start(url: str, count: int, takeover: float) -> list[Replica]:
    replicas = [Replica(url, takeover) for _ in range(count)]
    return [replica.wait() for replica in replicas]


def postgres_cpu(admin: sa.Engine) -> float:
    """CPU seconds of every PostgreSQL backend process so far (from /proc: same machine)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
    return total


def creates(replicas: list[Replica], requests: int, threads: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(offset: int) -> None:
        conns = [http.client.HTTPConnection(HOST, r.port, timeout=30) for r in replicas]
        mine: list[float] = []
        turn = offset
        for i in counter:
            conn = conns[turn % len(conns)]
            turn += 1
            body = json.dumps({"name": f"bench {i}"}).encode()
            began = time.perf_counter()
            conn.request("POST", "/api/v1/tasks", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            if response.status != 201:
                raise SystemExit(f"create answered {response.status}")
        with lock:
            latencies.extend(mine)

    began = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return requests / (time.perf_counter() - began), sorted(latencies)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL database (a schema is made in it and dropped)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--wakes", type=int, default=50)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--takeover", type=float, default=1.0)
    parser.add_argument("--counts", default="1,2,3", help="replica counts to measure, in this order")
    args = parser.parse_args()

    schema = f"lobstore_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{args.url}{'&' if '?' in args.url else '?'}options={quote(f'-csearch_path={schema}')}"
    open_store(url).close()  # migrate once, outside the timings
    print(f"PostgreSQL {args.url} (schema {schema}); {os.cpu_count()} cores shared by client, replicas and server;"
          f" {args.requests} creates per run over {args.threads} client threads\n")
    try:
        print("replicas  creates/s  p50 ms  p99 ms  CPU s per replica  PostgreSQL CPU s  client CPU s  load avg")
        for count in (int(n) for n in args.counts.split(",")):
            replicas = start(url, count, args.takeover)
            creates(replicas, min(200, args.requests), args.threads)  # warm up connections and pools
            cpu_before = [r.cpu_seconds() for r in replicas]
            pg_before, client_before = postgres_cpu(admin), time.process_time()
            rate, latencies = creates(replicas, args.requests, args.threads)
            cpu = [r.cpu_seconds() - b for r, b in zip(replicas, cpu_before)]
            pg, client = postgres_cpu(admin) - pg_before, time.process_time() - client_before
            print(f"{count:8d}  {rate:9.0f}  {pct(latencies, 0.5) * 1000:6.1f}  {pct(latencies, 0.99) * 1000:6.1f}  "
                  f"{' / '.join(f'{c:.1f}' for c in cpu):>17}  {pg:16.1f}  {client:12.1f}  {os.getloadavg()[0]:8.1f}")
            for r in replicas:
                r.stop()

        if args.kills == 0 and args.wakes == 0:
            return
        replicas = start(url, 3, args.takeover)
        with open_store(url, migrate=False) as waiter:
            waiter.changes.fallback_poll = 60  # only NOTIFY wakes it
            deadline = time.monotonic() + 10
            while not waiter.changes.hears_all and time.monotonic() < deadline:
                time.sleep(0.05)
            delays = []
            conn = http.client.HTTPConnection(HOST, replicas[0].port, timeout=10)
            for i in range(args.wakes):
                seen = waiter.changes.generation
                began = time.perf_counter()
                conn.request("POST", "/api/v1/tasks", body=json.dumps({"name": f"wake {i}"}).encode(),
                             headers={"Content-Type": "application/json"})
                conn.getresponse().read()
                if waiter.changes.wait(10, since=seen):
                    delays.append(time.perf_counter() - began)
            delays.sort()
        print(f"\nwrite through replica A -> waiter in another process woken (LISTEN/NOTIFY), {len(delays)} of "
              f"{args.wakes}: p50 {pct(delays, 0.5) * 1000:.1f} ms, p99 {pct(delays, 0.99) * 1000:.1f} ms, "
              f"max {delays[-1] * 1000:.1f} ms (the delay includes the create's own round trip)")

        print(f"\ntakeover after kill -9 of the broker-expiry holder (--takeover {args.takeover:g}):")
        for kill in range(args.kills):
            alive = [r for r in replicas if r.proc.poll() is None]
            holder = next(r for r in alive if "broker-expiry" in r.get("/health")["duties"]["held"])
            holder.stop(signal.SIGKILL)
            killed = time.perf_counter()
            others = [r for r in alive if r is not holder]
            while not any("broker-expiry" in r.get("/health")["duties"]["held"] for r in others):
                time.sleep(0.02)
            print(f"  kill {kill + 1}: another replica holds it after {time.perf_counter() - killed:.2f} s")
            replicas = others + [Replica(url, args.takeover).wait()]  # back to three
        for r in replicas:
            r.stop()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
