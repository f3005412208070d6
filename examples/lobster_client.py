"""A lobster reporting its status and progress to lobwife through lobstore.client.

    lobstore serve --db sqlite:///lobwife.db &                      # lobwife, on 127.0.0.1:8081
    curl -s -X POST localhost:8081/api/v1/tasks -H 'Content-Type: application/json' -d '{"name": "demo"}'
    python examples/lobster_client.py --task T1

Status changes and events are sent with ``defer=True``: if lobwife is restarting, they wait in a
local outbox and are replayed, in order and counted once, as soon as it answers again. The
lobster flushes before it exits so nothing is left behind. (Cost events will be reported the
same way once lobwife's cost routes exist: ``client.write("POST", "/costs", {...}, defer=True)``.)
"""

from __future__ import annotations

import argparse
import logging
import sys

from lobstore.client import APIError, Client, Queued, UnavailableError

log = logging.getLogger("lobster")


def run(client: Client, task: str, name: str) -> int:
    try:
        client.get_task(task)  # a read: fails fast if lobwife cannot be reached
    except UnavailableError as exc:
        log.error("cannot start: %s", exc)
        return 2
    client.update_task(task, status="active", assigned_to=name, defer=True)
    client.add_event(task, "started", detail=f"{name} picked up {task}", defer=True)
    for step, what in enumerate(["cloned the repos", "ran the tests", "opened a PR"], start=1):
        answer = client.add_event(task, "progress", detail=what, data={"step": step}, defer=True)
        if isinstance(answer, Queued):
            log.info("lobwife unreachable; step %d waits in the outbox", step)
    client.update_task(task, status="completed", defer=True)

    result = client.flush()  # nothing may stay behind when the pod ends
    for rejected in result.rejected:
        log.error("lobwife refused %s %s: %s", rejected.entry.method, rejected.entry.path, rejected.reason)
    if result.remaining:
        log.warning("%d reports still queued in %s: %s", result.remaining, client.outbox.path, result.error)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="lobwife's URL (default $LOBWIFE_URL or http://127.0.0.1:8081)")
    parser.add_argument("--task", required=True, help="the task this lobster works on, e.g. T42")
    parser.add_argument("--outbox", default="lobster-outbox.db", help="the local outbox file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    name = f"lobster-swe-{args.task.lower()}"
    with Client(args.url, outbox=args.outbox, actor=name) as client:
        try:
            return run(client, args.task, name)
        except APIError as exc:  # a refusal of a write sent straight away (not deferred)
            log.error("lobwife refused: %s", exc)
            return 1


if __name__ == "__main__":
    sys.exit(main())
