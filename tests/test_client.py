"""lobstore.client against a real `lobstore serve` subprocess (and a misbehaving proxy in front
of it): every route, typed errors, retries, lost answers, idempotency keys and the outbox.

The issue's "100 cost posts" are task events here: the cost routes land on another branch.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from lobstore import ConflictError, LobstoreError, NotFoundError, ValidationError
from lobstore.filters import TaskFilter
from lobstore.client import (
    APIConflictError,
    APINotFoundError,
    APIValidationError,
    Client,
    Queued,
    UnavailableError,
)
from lobstore.client import MAX_SERVER_ERRORS

from faulty_proxy import FaultyProxy


@pytest.fixture
def lobwife(db_url, servers):
    return servers(db_url)


@pytest.fixture
def proxy(lobwife):
    proxy = FaultyProxy(lobwife.port)
    yield proxy
    proxy.close()


def client_for(url: str, tmp_path: Path | None = None, **options) -> Client:
    options = {"retries": 2, "backoff": 0.01, **options}
    outbox = None if tmp_path is None else tmp_path / "outbox.db"
    return Client(url, outbox=outbox, **options)


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.port}"


def trail(client: Client, ref: str = "T1") -> list[tuple[str, str | None]]:
    """(event_type, detail) of each event; an update shows its new status as the detail."""
    out = []
    for event in client.task_events(ref):
        detail = event["detail"]
        if event["event_type"] == "updated":
            detail = event["data"]["changes"].get("status", {}).get("new")
        out.append((event["event_type"], detail))
    return out


def copy_sqlite(source: Path, destination: Path) -> None:
    """A consistent copy of a live WAL database (never a file copy)."""
    with sqlite3.connect(source) as src, sqlite3.connect(destination) as dst:
        src.backup(dst)


# -- every route --------------------------------------------------------------------------------
def test_every_route_through_the_client(lobwife):
    with client_for(url_of(lobwife), actor="lobboss") as lob:
        task = lob.create_task("Unity UI overhaul", type="swe", repos=["minsley/unity"])
        assert (task["task_id"], task["status"]) == ("T1", "queued")
        lob.create_task("second", type="research")
        assert lob.get_task("t1")["name"] == "Unity UI overhaul"
        assert [t["task_id"] for t in lob.list_tasks(type="swe")] == ["T1"]
        assert [t["task_id"] for t in lob.list_tasks(type=["swe", "research"])] == ["T2", "T1"]  # newest first
        assert [t["task_id"] for t in lob.list_tasks(order="asc")] == ["T1", "T2"]
        assert [t["task_id"] for t in lob.iter_tasks(page_size=1)] == ["T2", "T1"]
        assert [t["task_id"] for t in lob.iter_tasks(page_size=1, order="asc")] == ["T1", "T2"]
        wanted = TaskFilter(status=["queued"], repo="minsley/unity", created_since="2026-01-01")
        assert [t["task_id"] for t in lob.list_tasks(wanted)] == ["T1"]
        assert [t["task_id"] for t in lob.iter_tasks(TaskFilter(type="research"), page_size=1)] == ["T2"]
        with pytest.raises(ValidationError, match="unknown task filter 'colour'"):
            lob.list_tasks(colour="red")  # refused before anything is sent

        updated = lob.update_task("T1", status="active", assigned_to="lobster-swe-t1")
        assert set(updated["updated"]) >= {"status", "assigned_to"} and updated["task"]["status"] == "active"
        event = lob.add_event("T1", "note", detail="PR opened", data={"pr": 12})
        assert (event["event_type"], event["data"], event["actor"]) == ("note", {"pr": 12}, "lobboss")
        cancelled = lob.cancel_task("T2", reason="not needed")
        assert cancelled["status"] == "cancelled"

        events = lob.task_events("T1")
        assert [(e["event_type"], e["actor"]) for e in events] == [
            ("created", "lobboss"), ("updated", "lobboss"), ("note", "lobboss")]
        assert [e["event_type"] for e in lob.task_events("T1", after=events[0]["id"], limit=1)] == ["updated"]
        health = lob.health()
        assert health["status"] == "ok" and health["db"]["tasks"] == 2
        assert "/api/v1/tasks" in lob.openapi()["paths"]

        cost = lob.record_cost("claude-opus-4-6", task_id="T1", input_tokens=1200, output_tokens=300,
                               request_id="msg_01")
        assert (cost["task_id"], cost["cost_usd"]) == ("T1", 0.0135)
        assert lob.record_cost("claude-opus-4-6", task_id="T1", request_id="msg_01")["id"] == cost["id"]
        assert len(lob.record_costs([{"model": "claude-haiku-4-5", "cost_usd": 0.5}] * 2)) == 2
        assert [c["id"] for c in lob.costs(task_id="T1")] == [cost["id"]]
        assert lob.cost_summary(period="week", group_by="model")["cost_usd"] == 1.0135
        assert lob.task_costs("T1")["events"] == 1
        assert lob.set_price("m-1", input_usd_per_mtok=1, output_usd_per_mtok=2)["model"] == "m-1"
        assert "m-1" in [p["model"] for p in lob.prices()]

        run = lob.submit_audit("security", [{"severity": "warning", "title": "old key", "target": "a/b"}])
        finding = run["created"][0]
        assert [f["id"] for f in lob.findings(status="open")] == [finding["id"]]
        assert lob.update_finding(finding["id"], "resolved", resolution="rotated")["status"] == "resolved"

        registration = lob.register("T1", ["minsley/unity"], lobster_type="swe")
        assert registration["status"] == "registered"
        assert [e["action"] for e in lob.token_audit("T1")] == ["task_registered"]
        assert lob.deregister("T1")["status"] == "deregistered"
        standalone = lob.register_name("verify-test", ["minsley/lobmob-vault"], lobster_type="test")
        assert (standalone["task_id"], standalone["task"], standalone["standalone"]) == ("verify-test", None, True)
        assert lob.register_name("Unity UI overhaul", ["minsley/unity"])["task"] == "T1"  # by name
        assert set(lob.registrations()) == {"T1", "verify-test"}
        assert lob.deregister_name("verify-test")["ended"][0]["status"] == "deregistered"
        assert lob.registrations(status="active") == {"T1": lob.registrations()["T1"]}
        with pytest.raises(UnavailableError, match="503"):  # this server has no GitHub App (retried, as 503s are)
            lob.service_token("lobboss")
        patched = lob.update_task("T1", broker_repos=None, broker_status=None)
        assert patched["updated"] == ["broker_repos", "broker_status"]
        assert patched["task"]["broker_status"] == "deregistered"

        job = lob.record_run("task-manager", "success", duration=3.2, output="ok", exit_code=0,
                             started_at="2026-03-01T12:05:00Z")
        assert job["run_count"] == 1 and lob.jobs()["task-manager"]["last_status"] == "success"
        assert (job["last_run"], job["last_exit_code"]) == ("2026-03-01T12:05:00Z", 0)
        assert lob.disable_job("task-manager")["enabled"] is False
        assert lob.enable_job("task-manager")["enabled"] is True
        assert lob.job("task-manager")["last_output"] == "ok"
        assert lob.sync_status()["enabled"] is False
        status = lob.status()
        assert status["jobs"]["task-manager"]["run_count"] == 1 and status["broker"]["enabled"] is False

        budget = lob.set_budget("task", "total", 0.01, target="T1", hard=True)
        assert (budget["target"], budget["state"], budget["actor"]) == ("T1", "exhausted", "lobboss")
        assert lob.task_budget("T1")["state"] == "exhausted"
        assert [b["id"] for b in lob.budgets()] == [budget["id"]]
        assert [a["threshold"] for a in lob.budget_alerts(budget_id=budget["id"])] == [80, 100]
        assert lob.reprice("claude-opus-4-6", "2020-01-01", dry_run=True)["changed_events"] == 0


def test_refusals_are_typed_errors_with_the_status_and_the_servers_message(lobwife):
    lob = client_for(url_of(lobwife))
    with pytest.raises(APINotFoundError) as missing:
        lob.get_task("T99")
    assert isinstance(missing.value, NotFoundError) and missing.value.status == 404
    assert missing.value.code == "not_found" and "T99" in missing.value.message

    lob.create_task("done soon")
    lob.update_task("T1", status="active")
    lob.update_task("T1", status="completed")
    with pytest.raises(APIConflictError) as conflict:
        lob.update_task("T1", status="active")
    assert isinstance(conflict.value, ConflictError) and conflict.value.status == 409
    assert conflict.value.code == "invalid_transition" and conflict.value.payload["allowed"] == []

    with pytest.raises(APIValidationError) as invalid:
        lob.create_task("", priority="urgent")
    assert isinstance(invalid.value, ValidationError) and invalid.value.status == 422
    assert invalid.value.field in ("name", "priority") and "HTTP 422" in str(invalid.value)
    assert isinstance(invalid.value, LobstoreError)


# -- acceptance 1: the outbox while lobwife is down -------------------------------------------
def test_writes_queued_while_lobwife_is_down_are_replayed_in_order_and_counted_once(db_url, servers, tmp_path):
    server = servers(db_url)
    port = server.port
    lob = client_for(url_of(server), tmp_path, actor="lobster-swe-t1")
    lob.create_task("Unity UI overhaul", type="swe")
    assert server.terminate() == 0

    # 100 cost posts and 10 status updates, interleaved.
    statuses = ["active", "blocked"] * 5
    expected, answers = [], []
    for i in range(110):
        if i % 11 == 10:
            status = statuses[i // 11]
            answers.append(lob.update_task("T1", status=status, defer=True))
            expected.append(("updated", status))
        else:
            answers.append(lob.record_cost("claude-opus-4-6", task_id="T1", input_tokens=i, output_tokens=1,
                                           agent="lobster-swe-t1", defer=True))
    assert all(isinstance(answer, Queued) for answer in answers)
    assert len({answer.idempotency_key for answer in answers}) == 110
    assert lob.outbox.pending() == 110

    with pytest.raises(UnavailableError, match=f"127.0.0.1:{port}"):  # reads never queue
        lob.task_events("T1")
    assert lob.outbox.pending() == 110

    crashed_copy = tmp_path / "outbox-before-flush.db"
    copy_sqlite(tmp_path / "outbox.db", crashed_copy)

    servers(db_url, "--port", str(port))
    result = lob.flush()
    assert (result.sent, result.rejected, result.remaining, result.error) == (110, [], 0, None)
    after_flush = trail(lob)
    updates = [event for event in after_flush[1:] if event[0] != "cost"]
    assert after_flush[0][0] == "created" and updates == expected  # the updates, in order
    assert sum(event[0] == "cost" for event in after_flush) == 100  # each cost post on the feed once
    costs = lob.costs(task_id="T1", limit=1000)
    assert sorted(c["input_tokens"] for c in costs) == [i for i in range(110) if i % 11 != 10]
    assert lob.task_costs("T1")["events"] == 100

    assert lob.flush().sent == 0
    # A lobster that crashed after sending but before clearing its outbox replays all of it:
    # every entry keeps its key, so the server answers from what it stored and counts nothing twice.
    again = client_for(url_of(server), None)
    again.outbox = type(lob.outbox)(crashed_copy)
    assert again.flush().sent == 110
    assert trail(lob) == after_flush
    assert lob.task_costs("T1")["events"] == 100
    assert lob.get_task("T1")["status"] == "blocked"


def test_a_replayed_write_the_server_refuses_is_moved_aside_with_the_reason(db_url, servers, tmp_path):
    server = servers(db_url)
    lob = client_for(url_of(server), tmp_path)
    lob.create_task("t")
    port = server.port
    server.terminate()
    lob.add_event("T1", "note", detail="first", defer=True)
    lob.add_event("T99", "note", detail="no such task", defer=True)
    lob.add_event("T1", "created", detail="a type only the store writes", defer=True)
    lob.add_event("T1", "note", detail="last", defer=True)
    assert lob.outbox.pending() == 4

    servers(db_url, "--port", str(port))
    result = lob.flush()
    assert (result.sent, result.remaining) == (2, 0)
    assert [(r.status, r.entry.body["detail"]) for r in result.rejected] == [
        (404, "no such task"), (422, "a type only the store writes")]
    assert [t for t in trail(lob) if t[0] == "note"] == [("note", "first"), ("note", "last")]

    kept = lob.outbox.rejected()  # nothing is dropped silently
    assert [(r.status, r.entry.path) for r in kept] == [(404, "/api/v1/tasks/T99/events"),
                                                         (422, "/api/v1/tasks/T1/events")]
    assert "T99" in kept[0].reason and "store" in kept[1].reason
    assert lob.flush().sent == 0 and len(lob.outbox.rejected()) == 2  # never retried


def test_a_write_that_is_not_deferred_fails_instead_of_queueing(tmp_path):
    with socket.socket() as probe:  # a port with nobody behind it
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    lob = client_for(url, tmp_path)
    with pytest.raises(UnavailableError, match="failed 3 times"):
        lob.add_event("T1", "note")
    assert lob.outbox.pending() == 0
    assert isinstance(lob.add_event("T1", "note", detail="queued", defer=True), Queued)
    with pytest.raises(UnavailableError, match="outbox"):  # it would overtake the queued one
        lob.add_event("T1", "note", detail="not deferred")
    assert [e.body["detail"] for e in lob.outbox.entries()] == ["queued"]

    no_outbox = client_for(url)
    with pytest.raises(UnavailableError):
        no_outbox.add_event("T1", "note", defer=True)


def test_a_new_write_goes_after_the_queued_ones(lobwife, proxy, tmp_path):
    lob = client_for(proxy.url, tmp_path, quiet_period=0)
    lob.create_task("t")
    proxy.otherwise = 503  # lobwife "restarting"
    for n in range(3):
        assert isinstance(lob.add_event("T1", "note", detail=f"queued {n}", defer=True), Queued)
    proxy.otherwise = "forward"
    lob.add_event("T1", "note", detail="direct")  # not deferred: sent after the queue drains
    assert lob.outbox.pending() == 0
    assert [d for t, d in trail(lob) if t == "note"] == ["queued 0", "queued 1", "queued 2", "direct"]


def test_a_successful_read_replays_the_outbox(lobwife, proxy, tmp_path):
    lob = client_for(proxy.url, tmp_path, quiet_period=0)
    lob.create_task("t")
    proxy.otherwise = 503
    lob.add_event("T1", "note", detail="waited", defer=True)
    proxy.otherwise = "forward"
    lob.get_task("T1")
    assert lob.outbox.pending() == 0 and ("note", "waited") in trail(lob)


def test_an_entry_the_server_keeps_failing_with_500_is_set_aside_after_a_few_tries(lobwife, proxy, tmp_path):
    lob = client_for(proxy.url, tmp_path, quiet_period=0)
    lob.create_task("t")
    proxy.otherwise = 503
    lob.add_event("T1", "note", detail="poison", defer=True)
    lob.add_event("T1", "note", detail="fine", defer=True)
    proxy.otherwise = 500
    for _ in range(MAX_SERVER_ERRORS - 1):
        result = lob.flush()
        assert (result.sent, result.remaining, result.rejected) == (0, 2, [])
    proxy.script.append(500)  # the fifth 500 for the first entry; then the server works again
    proxy.otherwise = "forward"
    result = lob.flush()
    assert result.sent == 1 and result.remaining == 0
    assert [(r.status, r.entry.body["detail"]) for r in result.rejected] == [(500, "poison")]
    assert f"after {MAX_SERVER_ERRORS} attempts" in lob.outbox.rejected()[0].reason
    assert [d for t, d in trail(lob) if t == "note"] == ["fine"]


# -- acceptance 2: a lost answer ----------------------------------------------------------------
@pytest.mark.parametrize("defer", [False, True])
def test_a_write_whose_answer_is_lost_is_retried_and_recorded_once(lobwife, proxy, tmp_path, defer):
    lob = client_for(proxy.url, tmp_path)
    lob.create_task("t")
    proxy.script.append("drop")
    event = lob.add_event("T1", "note", detail="PR opened", defer=defer)
    assert event["detail"] == "PR opened"  # the answer, not a Queued
    posts = proxy.requests("POST", "/tasks/T1/events")
    assert [p.action for p in posts] == ["drop", "forward"]  # both reached lobwife
    assert posts[0].idempotency_key == posts[1].idempotency_key
    assert [t for t in trail(lob) if t[0] == "note"] == [("note", "PR opened")]

    proxy.script.append("drop")
    answer = lob.update_task("T1", status="active", defer=defer)
    assert answer["updated"] and answer["task"]["status"] == "active"
    assert [t for t in trail(lob) if t[0] == "updated"] == [("updated", "active")]
    assert lob.outbox.pending() == 0


def test_502_503_and_504_are_retried_with_the_same_key(lobwife, proxy):
    lob = client_for(proxy.url, retries=3)
    lob.create_task("t")
    proxy.script.extend([502, 503, 504])
    assert lob.add_event("T1", "note", detail="eventually")["detail"] == "eventually"
    posts = proxy.requests("POST", "/tasks/T1/events")
    assert [p.action for p in posts] == [502, 503, 504, "forward"]
    assert len({p.idempotency_key for p in posts}) == 1
    proxy.script.extend([503] * 4)
    with pytest.raises(UnavailableError, match="HTTP 503"):
        lob.add_event("T1", "note", detail="never")
    assert [d for t, d in trail(lob) if t == "note"] == ["eventually"]


def test_a_server_that_never_answers_times_out(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        lob = client_for(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.2, retries=1)
        with pytest.raises(UnavailableError, match="timed out"):
            lob.get_task("T1")


# -- acceptance 3: one key, two bodies; one key, two threads ------------------------------------
def test_the_same_key_with_a_different_body_is_refused_with_422(lobwife):
    lob = client_for(url_of(lobwife))
    lob.create_task("t")
    key = {"Idempotency-Key": "lobster-t1-report-1"}
    first = lob.transport.request("POST", "/api/v1/tasks/T1/events",
                                  body={"event_type": "note", "detail": "one"}, headers=key)
    with pytest.raises(APIValidationError) as refused:
        lob.transport.request("POST", "/api/v1/tasks/T1/events",
                              body={"event_type": "note", "detail": "two"}, headers=key)
    assert refused.value.status == 422 and refused.value.code == "idempotency_key_reused"
    assert "different" in refused.value.message
    repeat = lob.transport.request("POST", "/api/v1/tasks/T1/events",
                                   body={"event_type": "note", "detail": "one"}, headers=key)
    assert repeat.body == first.body and repeat.headers["idempotent-replayed"] == "true"
    assert [t for t in trail(lob) if t[0] == "note"] == [("note", "one")]


def test_threads_sending_one_key_at_once_make_one_effect(lobwife):
    lob = client_for(url_of(lobwife))
    lob.create_task("t")
    threads, rounds = 8, 10
    answers: dict[int, list] = {r: [] for r in range(rounds)}
    errors: list[BaseException] = []

    def send(round_: int, start: threading.Barrier) -> None:
        try:
            start.wait(timeout=30)
            response = lob.transport.request(
                "POST", "/api/v1/tasks/T1/events", body={"event_type": "note", "detail": f"round {round_}"},
                headers={"Idempotency-Key": f"key-{round_}"})
            answers[round_].append(response.body["id"])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    for round_ in range(rounds):
        start = threading.Barrier(threads)
        workers = [threading.Thread(target=send, args=(round_, start)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    assert errors == []
    assert all(len(ids) == threads and len(set(ids)) == 1 for ids in answers.values()), answers
    assert [d for t, d in trail(lob) if t == "note"] == [f"round {r}" for r in range(rounds)]


# -- the example -------------------------------------------------------------------------------
def test_the_lobster_example_reports_through_the_client(lobwife, tmp_path):
    import subprocess
    import sys

    example = Path(__file__).resolve().parent.parent / "examples" / "lobster_client.py"
    lob = client_for(url_of(lobwife))
    lob.create_task("Unity UI overhaul", type="swe")
    done = subprocess.run(
        [sys.executable, str(example), "--url", url_of(lobwife), "--task", "T1",
         "--outbox", str(tmp_path / "lobster-outbox.db")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    task = lob.get_task("T1")
    assert task["status"] == "completed" and task["assigned_to"] == "lobster-swe-t1"
    kinds = [kind for kind, _ in trail(lob)]
    assert kinds[:3] == ["created", "updated", "started"] and kinds[-1] == "updated"
    assert "progress" in kinds


def test_the_readme_client_example_runs_as_written(lobwife, tmp_path, monkeypatch, capsys):
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python client", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    lob = client_for(url_of(lobwife))
    lob.create_task("README task")
    monkeypatch.setenv("LOBWIFE_URL", url_of(lobwife))
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README client example", "exec"), {})
    assert capsys.readouterr().out.splitlines() == ["active", "0 0 []"]
    assert trail(lob)[1:] == [("updated", "active"), ("progress", "tests pass")]
