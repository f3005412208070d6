"""Change notification (lobstore.notify): a commit wakes followers, in this process and, on
PostgreSQL, in every other one through LISTEN/NOTIFY; polling covers a dropped listener."""

from __future__ import annotations

import threading
import time

import pytest

from lobstore import open_store
from lobstore.errors import LobstoreError

from test_jobs import wait_until

WAIT = 10.0  # a deadline for a failure, never a timing assertion


def test_a_committed_change_wakes_a_waiter_in_this_process(store):
    store.changes.fallback_poll = 60  # a True answer below cannot come from polling
    seen = store.changes.generation
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(store.changes.wait(WAIT, since=seen)))
    waiter.start()
    task = store.tasks.create(name="x")
    waiter.join(WAIT + 1)
    assert woke == [True] and store.changes.generation > seen
    assert store.events.for_task(task.ref)[-1].event_type == "created"


def test_a_failed_write_announces_nothing(store):
    heard: list[int] = []
    store.changes.subscribe(lambda: heard.append(1))
    if store.backend.name == "postgresql":
        wait_until(lambda: store.changes.hears_all, what="the listener")
    time.sleep(0.3)  # the listener's "look once" on connecting
    heard.clear()
    with pytest.raises(LobstoreError):
        with store.transaction() as tx:
            tx.tasks.create(name="rolled back")
            tx.tasks.create(name="")  # invalid: the whole transaction rolls back
    time.sleep(0.3)  # what NOTIFY would deliver arrives by then
    assert heard == [] and store.tasks.count() == 0
    store.tasks.create(name="kept")
    wait_until(lambda: heard, what="the change to be heard")


@pytest.mark.backends("sqlite-memory")
def test_a_quiet_wait_times_out_saying_nothing_changed(store):
    assert store.changes.hears_all  # nobody but this process can open an in-memory database
    assert store.changes.wait(0.1) is False


@pytest.mark.backends("sqlite-file")
def test_on_a_sqlite_file_waiters_also_poll_for_other_processes(db_url):
    with open_store(db_url) as store:
        store.changes.fallback_poll = 0.1
        assert not store.changes.hears_all
        assert store.changes.wait(WAIT) is True  # "look now": another process may have written
        assert store.changes.status()["listening"] is False


@pytest.mark.backends("postgresql")
def test_a_change_through_one_replica_wakes_a_waiter_of_another(db_url):
    """Two stores (two engines, as two processes have): a waiter on B wakes when A commits."""
    with open_store(db_url) as a, open_store(db_url) as b:
        b.changes.fallback_poll = 60  # so only the notification can wake it
        wait_until(lambda: b.changes.hears_all, what="B's listener")
        assert b.changes.status() == {"via": "LISTEN/NOTIFY", "listening": True}
        seen = b.changes.generation
        a.tasks.create(name="from A")
        assert b.changes.wait(WAIT, since=seen) is True
        # Rolled back on A: nothing reaches B.
        seen = b.changes.generation
        with pytest.raises(LobstoreError), a.transaction() as tx:
            tx.tasks.create(name="rolled back")
            tx.tasks.create(name="")
        assert b.changes.wait(0.5, since=seen) is False


@pytest.mark.backends("postgresql")
def test_when_the_listening_connection_drops_waiters_poll_until_it_is_back(db_url):
    with open_store(db_url) as a, open_store(db_url) as b:
        b.changes.fallback_poll = 0.2
        wait_until(lambda: b.changes.hears_all, what="B's listener")
        b.changes._listener.drop()  # what a network failure does to it
        wait_until(lambda: not b.changes.hears_all, what="B to notice the drop")
        assert b.changes.status()["via"] == "polling"
        assert b.changes.wait(WAIT) is True  # within fallback_poll: look now
        wait_until(lambda: b.changes.hears_all, what="B to listen again")
        b.changes.fallback_poll = 60
        seen = b.changes.generation
        a.tasks.create(name="after the drop")
        assert b.changes.wait(WAIT, since=seen) is True
