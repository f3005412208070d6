"""Work turns (lobstore/work.py) and SQLite's group commit (backends/write_groups.py).

Turns: at most N requests work at once, the others wait in the order they came, and whatever
waits — a long poll, a client slow to read its answer — gives its turn to the others.
Group commit: writers queued behind each other share one commit, yet each writer's failure
stays its own, and a commit that fails fails every writer of its group (none was answered).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
import sqlalchemy as sa

from lobstore import open_store
from lobstore.adapters.http import make_app
from lobstore.adapters.httpserver import HardenedServer, ServerLimits
from lobstore.errors import StorageError
from lobstore.store import Transaction
from lobstore.work import WorkSlots, current_turn, waiting
from store_contract import in_threads

WAIT = 15.0  # a guard against hanging, never a timing assert


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def queued(slots: WorkSlots) -> int:
    return len(slots._waiters)


# -- turns -----------------------------------------------------------------------------------
def test_turns_are_given_in_the_order_they_were_asked_for():
    slots, order = WorkSlots(1), []

    def request(name: str) -> None:
        with slots.turn():
            order.append(name)

    with slots.turn():
        threads = []
        for n, name in enumerate("abcde"):
            threads.append(threading.Thread(target=request, args=(name,)))
            threads[-1].start()
            until(lambda n=n: queued(slots) == n + 1, f"{name} to queue")
    for thread in threads:
        thread.join(WAIT)
    assert order == list("abcde")


def holder(slots: WorkSlots, name: str, ran: list[str], release: threading.Event) -> threading.Thread:
    """A request that takes its turn, notes it runs, and holds the turn until released."""
    def run() -> None:
        with slots.turn():
            ran.append(name)
            release.wait(WAIT)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_with_one_prompt_slot_short_requests_run_one_at_a_time():
    slots, ran, release = WorkSlots(2, prompt=1, overtime=3600), [], threading.Event()
    first = holder(slots, "a", ran, release)
    until(lambda: ran == ["a"], "a to run")
    done_at_once = threading.Event()
    done_at_once.set()
    second = holder(slots, "b", ran, done_at_once)
    until(lambda: queued(slots) == 1, "b to queue")
    time.sleep(0.1)
    assert ran == ["a"] and slots.held == 1  # a has not run long (an hour): b waits
    release.set()
    first.join(WAIT)
    until(lambda: ran == ["a", "b"], "b to run once a is done")
    second.join(WAIT)
    assert slots.held == 0


def test_a_slot_is_lent_beside_a_request_that_runs_long_to_the_longest_waiter():
    slots, ran = WorkSlots(2, prompt=1, overtime=0.02), []
    long_one, next_one, last_one = threading.Event(), threading.Event(), threading.Event()
    first = holder(slots, "long", ran, long_one)
    until(lambda: ran == ["long"], "the long request to run")
    others = [holder(slots, "b", ran, next_one)]
    until(lambda: "b" in ran or queued(slots) == 1, "b to queue")
    until(lambda: ran == ["long", "b"], "b to run beside the long one")
    assert slots.held == 2
    others.append(holder(slots, "c", ran, last_one))
    until(lambda: queued(slots) == 1, "c to queue")
    time.sleep(0.1)  # both held turns run long, but two is every slot there is
    assert ran == ["long", "b"] and slots.held == 2
    long_one.set()
    first.join(WAIT)
    until(lambda: ran == ["long", "b", "c"], "c to have the slot the long one gave back")
    next_one.set()
    last_one.set()
    for thread in others:
        thread.join(WAIT)
    assert slots.held == 0 and queued(slots) == 0


def test_a_request_coming_back_first_has_a_lent_slot_at_once():
    """A writer back from waiting for the writer lock holds what every other writer waits for:
    it does not wait for the running request's overtime (an hour here)."""
    slots, ran, release = WorkSlots(2, prompt=1, overtime=3600), [], threading.Event()
    waiting_for_lock, lock_taken, back, finish = (threading.Event() for _ in range(4))

    def writer() -> None:
        with slots.turn():
            with waiting(then_first=True):
                waiting_for_lock.set()
                lock_taken.wait(WAIT)
            back.set()
            finish.wait(WAIT)

    thread = threading.Thread(target=writer)
    thread.start()
    waiting_for_lock.wait(WAIT)
    reader = holder(slots, "reader", ran, release)  # has the prompt slot the writer gave back
    until(lambda: ran == ["reader"], "the reader to run")
    lock_taken.set()
    until(back.is_set, "the writer to have its turn again beside the reader")
    assert slots.held == 2
    release.set()
    finish.set()
    for done in (thread, reader):
        done.join(WAIT)
    assert slots.held == 0


def test_a_keeper_that_cannot_start_leaves_no_waiter_behind(monkeypatch):
    slots, errors = WorkSlots(2, prompt=1), []
    start = threading.Thread.start

    def refuse_the_keeper(thread: threading.Thread) -> None:
        if thread.name == "lobstore-work-slots":
            raise RuntimeError("can't start new thread")
        start(thread)

    def request() -> None:
        try:
            with slots.turn():
                pass
        except RuntimeError as exc:
            errors.append(str(exc))

    with slots.turn():
        monkeypatch.setattr(threading.Thread, "start", refuse_the_keeper)
        late = threading.Thread(target=request)
        late.start()
        late.join(WAIT)
        monkeypatch.undo()
        assert errors == ["can't start new thread"]
        assert queued(slots) == 0 and slots.held == 1
    assert slots.held == 0
    after = threading.Thread(target=request)
    after.start()
    after.join(WAIT)
    assert not after.is_alive() and errors == ["can't start new thread"] and slots.held == 0


def test_a_waiting_request_lets_others_work_and_then_goes_first_if_it_holds_what_they_need():
    slots, order = WorkSlots(1), []
    waited, release = threading.Event(), threading.Event()

    def writer() -> None:
        with slots.turn():
            with waiting(then_first=True):  # e.g. for the writer lock: others work meanwhile
                waited.set()
                release.wait(WAIT)
            order.append("writer")
            assert current_turn().held

    def other(name: str) -> None:
        with slots.turn():
            order.append(name)

    first = threading.Thread(target=writer)
    first.start()
    waited.wait(WAIT)
    with slots.turn():  # the writer's turn was given back: this one gets it at once
        late = [threading.Thread(target=other, args=(name,)) for name in ("x", "y")]
        for n, thread in enumerate(late):
            thread.start()
            until(lambda n=n: queued(slots) == n + 1, "the others to queue")
        release.set()
        until(lambda: queued(slots) == 3, "the writer to queue")
    for thread in (first, *late):
        thread.join(WAIT)
    assert order == ["writer", "x", "y"]  # back ahead of the two that queued before it


def test_a_lock_held_by_a_waiting_request_is_waited_for_without_a_turn():
    """Three requests for one token with two slots: the one minting waits on GitHub without
    its turn; the two others wait for its lock. Had they kept their turns, the minter could
    never have its turn back."""
    from lobstore.broker.tokens import TokenCache

    slots, cache, done = WorkSlots(2), TokenCache(), []

    def request(n: int) -> None:
        with slots.turn(), cache.minting("task 7"):
            with waiting():
                time.sleep(0.2)  # GitHub minting
            done.append(n)

    threads = [threading.Thread(target=request, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(WAIT)
    assert sorted(done) == [0, 1, 2]


def test_outside_a_server_waiting_does_nothing():
    with waiting():
        assert current_turn() is None


# -- turns in the server ---------------------------------------------------------------------
@pytest.fixture
def one_slot(tmp_path):
    """A real server with 4 threads and one work slot, over a store with a few tasks."""
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with store.transaction() as tx:
        for n in range(400):
            tx.tasks.create(name=f"task {n}", description="d" * 30000)
    httpd = HardenedServer(("127.0.0.1", 0), make_app(store), ServerLimits(threads=4, work_slots=1))
    httpd.prepare()
    threading.Thread(target=httpd.serve, daemon=True).start()
    yield httpd.bind_addr[1]
    httpd.stop()
    store.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_waiting_long_poll_does_not_hold_the_only_work_slot(one_slot):
    answered = []
    poll = threading.Thread(target=lambda: answered.append(get(one_slot, "/api/v1/events?after=999999&wait=8")))
    poll.start()
    time.sleep(0.3)  # the poll is waiting by now (or not yet in: either way it must not block)
    for _ in range(5):
        assert get(one_slot, "/api/v1/tasks/T1")[0] == 200
    assert poll.is_alive() and not answered  # answered while the poll still waits
    poll.join(WAIT)
    assert answered[0][0] == 200


def test_a_client_that_does_not_read_its_answer_does_not_hold_the_only_work_slot(one_slot):
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # its answer (12 MB) cannot fit
    stalled.connect(("127.0.0.1", one_slot))
    try:
        stalled.sendall(b"GET /api/v1/tasks?limit=400 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # the server is stuck writing to it
        for _ in range(5):
            status, body = get(one_slot, "/api/v1/tasks/T2")
            assert status == 200 and b'"task_id":"T2"' in body
    finally:
        stalled.close()


# -- group commit ----------------------------------------------------------------------------
@pytest.fixture
def file_store(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'groups.sqlite'}") as store:
        yield store


def hold_the_writer_lock(store, queue_behind: int):
    """A writer that keeps the writer lock (its block open) until ``queue_behind`` others
    queue for it; returns (thread, errors)."""
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with store.transaction() as tx:
                tx.tasks.create(name="first")
                until(lambda: store.backend._groups._queued >= queue_behind, "the others to queue")
        except BaseException as exc:  # noqa: BLE001 - looked at by the test
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    until(lambda: store.backend._groups.lock.locked(), "the first writer to hold the lock")
    return thread, errors


def writer(store, name: str, results: dict, *, fail: BaseException | None = None, sql: tuple[str, ...] = ()):
    def run() -> None:
        try:
            with store.backend.writing() as conn:
                Transaction(store.backend, conn, store._context).tasks.create(name=name)
                for statement in sql:
                    conn.exec_driver_sql(statement)
                if fail is not None:
                    raise fail
            results[name] = "ok"
        except BaseException as exc:  # noqa: BLE001 - looked at by the test
            results[name] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def names(store) -> set[str]:
    return {task.name for task in store.tasks.list(limit=1000)}


def test_in_a_group_a_failed_write_is_undone_alone(file_store):
    commits = []
    sa.event.listen(file_store.backend.engine, "commit", lambda conn: commits.append(1))
    first, errors = hold_the_writer_lock(file_store, queue_behind=3)
    results: dict = {}
    threads = [writer(file_store, "second", results)]
    until(lambda: file_store.backend._groups._queued >= 1, "second to queue")
    threads.append(writer(file_store, "broken", results, fail=ValueError("refused")))
    until(lambda: file_store.backend._groups._queued >= 2, "broken to queue")
    threads.append(writer(file_store, "third", results))
    for thread in (first, *threads):
        thread.join(WAIT)
    assert len(commits) == 1  # four writers, one commit
    assert errors == [] and results["second"] == results["third"] == "ok"
    assert isinstance(results["broken"], ValueError)
    assert names(file_store) == {"first", "second", "third"}


def test_a_group_whose_commit_fails_fails_every_writer_in_it_and_keeps_nothing(file_store):
    first, errors = hold_the_writer_lock(file_store, queue_behind=2)
    results: dict = {}
    # A foreign key checked at COMMIT: the whole group's commit fails.
    bad = ("PRAGMA defer_foreign_keys=ON",
           "INSERT INTO task_events (task_id, event_type, data, created_at) "
           "VALUES (99999, 'note', '{}', '2026-01-01 00:00:00.000000')")
    threads = [writer(file_store, "violator", results, sql=bad)]
    until(lambda: file_store.backend._groups._queued >= 1, "the violator to queue")
    threads.append(writer(file_store, "innocent", results))
    for thread in (first, *threads):
        thread.join(WAIT)
    assert len(errors) == 1 and isinstance(errors[0], StorageError)
    assert all(isinstance(results[name], StorageError) for name in ("violator", "innocent")), results
    assert names(file_store) == set()
    file_store.tasks.create(name="after")  # the writer connection was replaced: writes go on
    assert names(file_store) == {"after"}


def test_many_writers_at_once_all_land_in_fewer_commits(file_store):
    commits = []
    sa.event.listen(file_store.backend.engine, "commit", lambda conn: commits.append(1))

    def write(n: int) -> None:
        for i in range(40):
            file_store.tasks.create(name=f"w{n}-{i}")

    assert in_threads(8, write) == []
    assert len(commits) < 320
    assert names(file_store) == {f"w{n}-{i}" for n in range(8) for i in range(40)}
    ids = [task.id for task in file_store.tasks.list(limit=1000)]
    assert ids == list(range(1, 321))  # sequential ids, none lost


def test_a_writer_failing_before_its_work_begins_does_not_keep_the_writer_lock(file_store):
    def broken(_seconds: float) -> None:
        raise RuntimeError("a metrics hook that fails")

    file_store.backend.on_write_wait = broken
    with pytest.raises(RuntimeError):
        file_store.tasks.create(name="never")
    file_store.backend.on_write_wait = None
    assert not file_store.backend._groups.lock.locked()
    file_store.tasks.create(name="after")
    assert names(file_store) == {"after"}


def test_closing_the_store_commits_a_group_handed_to_it(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'closing.sqlite'}")
    first, errors = hold_the_writer_lock(store, queue_behind=1)
    closer = threading.Thread(target=store.close)
    closer.start()  # queues for the writer lock like a writer; the first hands its group on
    first.join(WAIT)
    closer.join(WAIT)
    assert errors == [] and not closer.is_alive()
    with open_store(f"sqlite:///{tmp_path / 'closing.sqlite'}") as again:
        assert names(again) == {"first"}


def test_a_writer_that_cannot_begin_gets_a_storage_error_and_the_next_one_writes(tmp_path):
    """Another process holds the file's writer lock past the busy timeout: the write is refused
    as a storage error (a 503 over HTTP), keeps no lock, and the next write goes through."""
    import sqlite3

    path = tmp_path / "busy.sqlite"
    with open_store(f"sqlite:///{path}") as store:
        store.backend._group_connection().connection.driver_connection.execute("PRAGMA busy_timeout=100")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError, match="database is locked"):
            store.tasks.create(name="blocked")
        assert not store.backend._groups.lock.locked()
        other.execute("ROLLBACK")
        other.close()
        store.tasks.create(name="after")
        assert names(store) == {"after"}
