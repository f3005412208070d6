"""Cron job benchmark: what the scheduler adds to a run, and the API while jobs run.

    python bench/bench_jobs.py [--runs 200] [--requests 2000] [--url postgresql://...]

1. **Scheduling overhead per run.** A job running ``/bin/true`` is triggered ``--runs`` times
   in a row through the store; each run is timed from the scheduler's pass (which claims the
   run in the store and spawns the child; the run's thread reads its output and records the
   outcome) to its recorded state, and from the trigger. Beside it, the same ``/bin/true``
   started bare with ``subprocess.run``. The difference is what lobstore adds per run (two
   durable commits and a read, the process group, the output reader).
2. **The API while 4 jobs run.** `lobstore serve --jobs` with four jobs that each print a
   line every 5 ms (the scheduler reads and trims their output all along); GET /api/jobs and
   GET /api/tasks/T1 are timed one after another over a keep-alive connection, first with no
   job running, then with the four running. Prints p50/p99 of each.

SQLite file in a temporary folder by default; ``--url`` for PostgreSQL (an empty database or
schema). Client, server and jobs share the machine's cores: read the figures as relative.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
LOBSTORE = Path(sys.executable).with_name("lobstore")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- 1. overhead per run -------------------------------------------------------------------------
def overhead(url: str, runs: int) -> None:
    from lobstore import open_store
    from lobstore.cron import JobScheduler, parse_jobs

    true = "/bin/true"
    bare = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([true], check=True)
        bare.append(time.perf_counter() - began)

    with open_store(url) as store:
        jobs = parse_jobs({"jobs": {"bench-true": {"command": [true], "schedule": "0 0 1 1 *"}}})
        scheduler = JobScheduler(store, jobs)
        store.set_job_runner(scheduler)
        scheduler.on_start()
        scheduler.run_now()  # takes the duty
        timed, spawned, child = [], [], []
        for _ in range(runs):
            began = time.perf_counter()
            store.jobs.trigger("bench-true")
            passed = time.perf_counter()
            scheduler.run_now()  # the pass a trigger wakes: it claims the run and spawns the child
            if not scheduler.wait_idle(30):
                raise SystemExit("a run did not end")
            ended = time.perf_counter()
            timed.append(ended - began)
            spawned.append(ended - passed)
            child.append(store.jobs.get("bench-true").last_duration)
        job = store.jobs.get("bench-true")
        scheduler.stop()
        assert job.run_count == runs and job.last_status == "success", job
    added = [t - b for t, b in zip(spawned, bare)]
    print(f"overhead per run ({store.backend.name}, {runs} runs of {true}):")
    print(f"  bare subprocess.run         p50 {ms(percentile(bare, .5))}   p99 {ms(percentile(bare, .99))}")
    print(f"  pass -> recorded state      p50 {ms(percentile(spawned, .5))}   p99 {ms(percentile(spawned, .99))}"
          f"   (claim, spawn, read the output, record; the child itself as recorded: "
          f"p50 {ms(statistics.median(child))})")
    print(f"  trigger -> recorded state   p50 {ms(percentile(timed, .5))}   p99 {ms(percentile(timed, .99))}"
          "   (plus writing the trigger)")
    print(f"  added to a bare spawn       p50 {ms(statistics.median(added))}   mean {ms(statistics.mean(added))}"
          "   (pass -> recorded, less the bare run)")


# -- 2. the API while 4 jobs run -----------------------------------------------------------------
CHATTY = ("import sys, time\nend = time.time() + {seconds}\n"
          "while time.time() < end:\n    print('progress ' + 'x' * 70, flush=True)\n    time.sleep(0.005)\n")


def serve(url: str, folder: Path, seconds: float) -> tuple[subprocess.Popen, int]:
    jobs = folder / "jobs.toml"
    code = json.dumps(CHATTY.format(seconds=seconds))
    jobs.write_text("".join(
        f'[jobs.chatty-{n}]\ncommand = ["{sys.executable}", "-c", {code}]\nschedule = "0 0 1 1 *"\n\n'
        for n in range(1, 5)))
    log = (folder / "serve.log").open("w")
    proc = subprocess.Popen([str(LOBSTORE), "serve", "--db", url, "--port", "0", "--jobs", str(jobs)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = re.search(r"on http://127\.0\.0\.1:(\d+)", (folder / "serve.log").read_text())
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"lobstore serve did not start:\n{(folder / 'serve.log').read_text()}")


def call(conn: http.client.HTTPConnection, method: str, path: str, body: object = None) -> dict:
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    if response.status >= 400:
        raise SystemExit(f"{method} {path}: {response.status} {data}")
    return data


def timed_gets(conn: http.client.HTTPConnection, requests: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"/api/jobs": [], "/api/tasks/T1": []}
    for n in range(requests):
        path = "/api/jobs" if n % 2 else "/api/tasks/T1"
        began = time.perf_counter()
        call(conn, "GET", path)
        times[path].append(time.perf_counter() - began)
    return times


def api_while_jobs_run(url: str, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        seconds = max(5.0, requests / 200)  # long enough to outlast the timed requests
        proc, port = serve(url, Path(tmp), seconds)
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            call(conn, "POST", "/api/tasks", {"name": "bench"})
            idle = timed_gets(conn, requests)
            for n in range(1, 5):
                call(conn, "POST", f"/api/jobs/chatty-{n}/trigger")
            deadline = time.monotonic() + 10
            while sum(job["running"] for job in call(conn, "GET", "/api/jobs").values()) < 4:
                if time.monotonic() > deadline:
                    raise SystemExit("the 4 jobs did not start")
                time.sleep(0.01)
            began = time.monotonic()
            busy = timed_gets(conn, requests)
            still = sum(job["running"] for job in call(conn, "GET", "/api/jobs").values())
            print(f"API answer time, {requests} GETs each way ({url.split(':')[0]}; "
                  f"4 jobs printing a line every 5 ms, {time.monotonic() - began:.1f} s, {still} still running at the end):")
            for path in idle:
                print(f"  {path:<16} idle p50 {ms(percentile(idle[path], .5))} p99 {ms(percentile(idle[path], .99))}"
                      f"   4 jobs running p50 {ms(percentile(busy[path], .5))} p99 {ms(percentile(busy[path], .99))}")
            conn.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs of /bin/true to time (default 200)")
    parser.add_argument("--requests", type=int, default=2000, help="GETs per measurement (default 2000)")
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overhead(args.url or f"sqlite:///{tmp}/bench-overhead.db", args.runs)
        api_while_jobs_run(args.url or f"sqlite:///{tmp}/bench-api.db", args.requests)


if __name__ == "__main__":
    main()
