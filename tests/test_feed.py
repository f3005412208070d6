"""The change feed: long poll, Server-Sent Events and the client's resuming iterator, on every
backend; on PostgreSQL also ids that commit out of order."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from lobstore import open_store
from lobstore.client import Client
from lobstore.feed import FeedFollower

from live_server import Forwarder, LiveServer


def _events(store, task, n, kind="note", per_transaction=100):
    for start in range(0, n, per_transaction):
        with store.transaction() as tx:
            for i in range(start, min(n, start + per_transaction)):
                tx.events.add(task, kind, detail=f"{i}")


# -- long poll ---------------------------------------------------------------------------------
def test_long_poll_pages_and_filters(store, client):
    a = store.tasks.create(name="a", type="swe")
    b = store.tasks.create(name="b", type="swe")
    store.tasks.update(a.ref, status="active")
    store.events.add(b.ref, "note", detail="hello")
    page = client.get("/api/v1/events?after=0&limit=2").json
    assert [e["event_type"] for e in page["events"]] == ["created", "created"]
    rest = client.get(f"/api/v1/events?after={page['last_id']}").json
    assert [(e["task"], e["event_type"], e["status"]) for e in rest["events"]] == [
        (a.ref, "updated", "active"), (b.ref, "note", None)]
    assert client.get(f"/api/v1/events?task={b.ref}").json["events"][-1]["detail"] == "hello"
    assert [e["task"] for e in client.get("/api/v1/events?status=active").json["events"]] == [a.ref]
    noted = client.get("/api/v1/events?type=note,created").json
    assert [e["event_type"] for e in noted["events"]] == ["created", "created", "note"]
    assert noted["last_id"] == rest["last_id"]  # the cursor passes what the filter skipped


@pytest.mark.parametrize("query, field", [
    ("after=-1", "after"), ("after=x", "after"), ("wait=61", "wait"), ("status=done", "status"),
    ("limit=0", "limit"), ("color=red", "color"), ("type=", "type")])
def test_long_poll_bad_input_is_a_422_naming_the_field(client, query, field):
    response = client.get(f"/api/v1/events?{query}")
    assert response.status == 422 and response.json["field"] == field, response.json


def test_long_poll_unknown_task_is_a_404(client):
    assert client.get("/api/v1/events?task=T999").status == 404


def test_long_poll_answers_when_an_event_commits(store, client):
    task = store.tasks.create(name="a")
    after = store.events.latest_id()
    threading.Timer(0.3, lambda: store.events.add(task.ref, "note", detail="late")).start()
    answer = client.get(f"/api/v1/events?after={after}&wait=20").json
    assert [e["detail"] for e in answer["events"]] == ["late"]


def test_a_waiting_long_poll_keeps_to_its_limit(store, client):
    task = store.tasks.create(name="a")
    after = store.events.latest_id()

    def burst():
        with store.transaction() as tx:
            for n in range(30):
                tx.events.add(task.ref, "note", detail=f"n{n}")

    threading.Timer(0.3, burst).start()
    answer = client.get(f"/api/v1/events?after={after}&wait=20&limit=5").json
    assert [e["detail"] for e in answer["events"]] == [f"n{n}" for n in range(5)]
    assert answer["last_id"] == answer["events"][-1]["id"]  # the next poll goes on from the 6th


# -- the stream --------------------------------------------------------------------------------
def _raw_stream(server, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    return conn, conn.getresponse()


def _blocks(response, count):
    """The next ``count`` blank-line-separated blocks of the stream, as lists of lines."""
    blocks, lines = [], []
    while len(blocks) < count:
        line = response.readline().decode().rstrip("\n")
        if line:
            lines.append(line)
        elif lines:
            blocks.append(lines)
            lines = []
    return blocks


@pytest.fixture
def live(store):
    started = []

    def start(**options):
        started.append(LiveServer(store, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_stream_sends_ids_types_and_json_and_resumes_with_last_event_id(store, live):
    server = live()
    task = store.tasks.create(name="a")
    conn, response = _raw_stream(server, "/api/v1/events/stream?after=0")
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    store.tasks.update(task.ref, status="active")
    hello, created, updated = _blocks(response, 3)
    assert hello[0].startswith("retry:")
    assert created[:2] == ["id: 1", "event: created"]
    data = json.loads(updated[2].removeprefix("data: "))
    assert (updated[0], data["task"], data["status"]) == ("id: 2", task.ref, "active")
    conn.close()
    store.events.add(task.ref, "note", detail="while away")
    conn, response = _raw_stream(server, "/api/v1/events/stream?after=0", {"Last-Event-ID": "2"})
    _, missed = _blocks(response, 2)
    assert missed[:2] == ["id: 3", "event: note"]  # the header wins over ?after
    conn.close()


def test_stream_filters(store, live):
    server = live()
    a, b = store.tasks.create(name="a"), store.tasks.create(name="b")
    client = Client(server.url)
    stream = iter(client.events(after=0, task=b.ref, type=["note", "updated"]))
    store.events.add(a.ref, "note")
    store.tasks.update(b.ref, status="active")
    store.events.add(b.ref, "note", detail="b's note")
    assert [(e["task"], e["event_type"]) for e in (next(stream), next(stream))] == [
        (b.ref, "updated"), (b.ref, "note")]
    by_status = iter(client.events(after=0, status="active"))
    assert next(by_status)["task"] == b.ref


def test_quiet_stream_gets_heartbeats_that_move_its_resume_point(store, live):
    server = live(heartbeat=0.2)
    store.tasks.create(name="a")  # its "created" event is what the type filter passes over
    conn, response = _raw_stream(server, "/api/v1/events/stream?after=0&type=note")
    _, beat = _blocks(response, 2)
    assert beat[0].startswith(": heartbeat") and beat[1] == "id: 1"  # passed the created event
    assert _blocks(response, 1)[0][0].startswith(": heartbeat")  # and again: no id moved this time
    conn.close()


def test_streams_beyond_the_cap_get_a_json_503_with_retry_after(store, live):
    server = live(max_streams=2, heartbeat=0.2)
    open_ = [_raw_stream(server, "/api/v1/events/stream") for _ in range(2)]
    assert all(response.status == 200 for _, response in open_)
    conn, refused = _raw_stream(server, "/api/v1/events/stream")
    body = json.loads(refused.read())
    assert refused.status == 503 and refused.getheader("Retry-After") == "5"
    assert body["code"] == "too_many_streams"
    assert json.loads(_raw_stream(server, "/api/v1/events?wait=1")[1].read())["code"] == "too_many_streams"
    assert _raw_stream(server, "/api/v1/tasks")[1].status == 200  # other requests still served
    for c, _ in open_:
        c.close()
    # A stream notices its gone client when it next writes (a heartbeat at the latest).
    deadline = time.monotonic() + 10
    while (status := _raw_stream(server, "/api/v1/events/stream")[1].status) != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200


# -- nothing lost, nothing repeated ------------------------------------------------------------
N_EVENTS = 10_000
WRITERS = 4


def test_resume_after_drops_and_a_restart_loses_and_repeats_nothing(db_url):
    store = open_store(db_url)
    tasks = [store.tasks.create(name=f"t{i}").ref for i in range(WRITERS)]
    first = store.events.latest_id()
    server = LiveServer(store)

    writer = open_store(db_url)  # another process's store: the writes go on across the restart

    def write(ref):  # concurrent writers: on PostgreSQL ids commit out of order
        _events(writer, ref, N_EVENTS // WRITERS, per_transaction=25)

    writers = [threading.Thread(target=write, args=(ref,)) for ref in tasks]
    for thread in writers:
        thread.start()
    live = {"store": store, "server": server}
    address = Forwarder(lambda: live["server"].port)  # one address across the restart
    client = Client(address.url)
    seen: list[int] = []
    last = first

    def restart():  # the server stops under the open stream and comes back: the client resumes itself
        live["server"].stop()
        live["store"].close()
        live["store"] = open_store(db_url)
        live["server"] = LiveServer(live["store"])

    restarter = threading.Thread(target=restart)
    while len(seen) < N_EVENTS:
        stream = client.events(after=last)
        for event in stream:
            seen.append(event["id"])
            if len(seen) == N_EVENTS // 2 + 10:
                restarter.start()
            if len(seen) % 1000 == 0 or len(seen) == N_EVENTS:
                break  # the client drops and comes back with the last id it saw
        last = stream.last_id
        stream.close()
    restarter.join()
    store, server = live["store"], live["server"]
    for thread in writers:
        thread.join()
    writer.close()
    server.stop()
    address.close()
    expected = [e.id for e in store.events.feed(after=first, limit=1000)]
    while len(expected) < N_EVENTS:
        expected += [e.id for e in store.events.feed(after=expected[-1], limit=1000)]
    store.close()
    assert len(seen) == len(set(seen)) == N_EVENTS
    assert seen == expected  # in id order, every one


# -- ids that commit out of order --------------------------------------------------------------
@pytest.mark.backends("postgresql")
def test_follower_waits_for_an_open_transaction_and_skips_a_rolled_back_id(store):
    task = store.tasks.create(name="a").ref
    follower = FeedFollower(store, store.events.latest_id())
    held = threading.Event()
    release = threading.Event()

    def slow_writer(commit):
        try:
            with store.transaction() as tx:
                tx.events.add(task, "note", detail="slow")
                held.set()
                release.wait(10)
                if not commit:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            pass

    for commit in (True, False):
        held.clear(), release.clear()
        thread = threading.Thread(target=slow_writer, args=(commit,))
        thread.start()
        held.wait(10)
        store.events.add(task, "note", detail="fast")  # a later id, committed first
        assert follower.wait(0.5) == []  # held back behind the open transaction
        release.set()
        thread.join()
        got = follower.wait(10)
        assert [e.detail for e in got] == (["slow", "fast"] if commit else ["fast"])


def test_lobstore_serve_streams_and_ends_streams_when_it_stops(db_url, servers):
    server = servers(db_url, "--max-streams", "4")
    client = Client(f"http://127.0.0.1:{server.port}")
    stream = client.events(after=0)
    events = iter(stream)
    client.create_task("through serve")
    assert next(events)["event_type"] == "created"
    assert server.terminate() == 0  # an open stream does not hold the server up (wait has a timeout)
    stream.close()
