"""The lifecycle clock in `lobstore serve` and in the client: the sweep runs in one server per
database (the other stands by and takes over), `lobstore sweep` runs it once, and a lobster's
client keeps its lease with heartbeats on a background thread."""

from __future__ import annotations

import re
import time

from lobstore import open_store
from lobstore.cli import main
from lobstore.client import Client


def wait_until(predicate, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def logged(server, pattern: str) -> str:
    return next((line for line in server.lines if re.search(pattern, line)), None) or server.wait_for(pattern)


def requeued(url: str, ref: str) -> list:
    with open_store(url) as store:
        return [e for e in store.events.for_task(ref) if e.event_type == "requeued"]


def test_one_serve_per_database_sweeps_and_a_standby_takes_over(db_url, servers, monkeypatch):
    monkeypatch.setenv("LOBSTORE_SWEEP_INTERVAL", "0.2")
    with open_store(db_url) as store:
        first, second = (store.tasks.create(name=f"work {n}").ref for n in range(2))
    one, two = servers(db_url), servers(db_url)
    role = r"the lease sweep: (running here|.* runs it already .* stands by)"
    roles = [logged(server, role) for server in (one, two)]
    assert sorted("running here" in line for line in roles) == [False, True]
    leader, standby = (one, two) if "running here" in roles[0] else (two, one)

    status, _, claimed = leader.request("POST", "/api/v1/tasks/claim", {"lobster": "lobster-a", "lease_seconds": 1})
    assert (status, claimed["task_id"]) == (200, first)
    wait_until(lambda: requeued(db_url, first), what="the lapsed lease to be re-queued")
    time.sleep(1)  # more passes of both servers: still one move
    assert len(requeued(db_url, first)) == 1

    assert leader.terminate() == 0  # the restart: the other server sweeps from now on
    logged(standby, r"the lease sweep: taking over here")
    claim = {"lobster": "lobster-b", "lease_seconds": 1}
    for _ in (first, second):  # the older first
        assert standby.request("POST", "/api/v1/tasks/claim", claim)[0] == 200
    wait_until(lambda: requeued(db_url, second), what="the standby to sweep")
    assert len(requeued(db_url, first)) == 2 and len(requeued(db_url, second)) == 1


def test_lobstore_sweep_runs_one_pass(sqlite_file_url, capsys, monkeypatch):
    with open_store(sqlite_file_url) as store:
        store.tasks.create(name="work")
        task = store.tasks.claim(lobster="lobster-a", lease_seconds=1)
    time.sleep(1.1)
    assert main(["--db", sqlite_file_url, "sweep"]) == 0
    out = capsys.readouterr().out
    assert task.ref in out and "requeue" in out and "lobster-a" in out
    assert main(["--db", sqlite_file_url, "sweep"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    monkeypatch.setenv("LOBSTORE_FAIL_MINUTES", "never")
    assert main(["--db", sqlite_file_url, "sweep"]) == 1
    assert "LOBSTORE_FAIL_MINUTES must be a number" in capsys.readouterr().err


def test_the_client_claims_and_keeps_its_lease_until_it_is_taken_back(sqlite_file_url, servers):
    with open_store(sqlite_file_url) as store:
        store.tasks.create(name="work", type="qa")
    server = servers(sqlite_file_url)
    lobwife = Client(f"http://127.0.0.1:{server.port}", retries=0, actor="lobster-qa-1")
    assert lobwife.claim("lobster-qa-1", types=["swe"]) is None
    task = lobwife.claim("lobster-qa-1", types=["qa"], lease_seconds=30)
    assert (task["status"], task["assigned_to"], task["attempts"]) == ("active", "lobster-qa-1", 1)
    with lobwife.holding(task["task_id"], lobster="lobster-qa-1", lease_seconds=30, every=0.2) as lease:
        wait_until(lambda: lease.beats >= 2, what="two heartbeats")
        assert lease.lease_expires_at >= task["lease_expires_at"] and not lease.lost
        lobwife.update_task(task["task_id"], status="queued", actor="lobboss", reason="taken back")
        wait_until(lambda: lease.lost, what="the keeper to notice")
    assert "queued, not active" in lease.lost_reason
    lobwife.close()
