"""The client's outbox on its own: order, rejections set aside with their reason, and a file
that outlives the process that wrote it."""

from __future__ import annotations

import socket

import pytest

from lobstore.client import Client, Outbox, Queued


@pytest.fixture
def path(tmp_path):
    return tmp_path / "lobster" / "outbox.db"  # the folder is created on first use


def fill(outbox: Outbox, n: int) -> None:
    for i in range(n):
        outbox.add("POST", "/api/v1/tasks/T1/events", {"event_type": "note", "detail": f"n{i} \u00e9\U0001f99e"}, f"key-{i}")


def details(entries) -> list[str]:
    return [e.body["detail"].split()[0] for e in entries]


def test_entries_come_back_oldest_first_with_body_and_key(path):
    outbox = Outbox(path)
    fill(outbox, 5)
    outbox.add("DELETE", "/api/v1/tasks/T1", None, "key-delete")
    assert outbox.pending() == 6
    assert details(outbox.entries()[:5]) == ["n0", "n1", "n2", "n3", "n4"]
    first = outbox.oldest()
    assert (first.method, first.idempotency_key) == ("POST", "key-0")
    assert first.body == {"event_type": "note", "detail": "n0 \u00e9\U0001f99e"}
    last = outbox.entries()[-1]
    assert (last.method, last.body, last.idempotency_key) == ("DELETE", None, "key-delete")
    outbox.done(first)
    assert outbox.oldest().idempotency_key == "key-1" and outbox.pending() == 5


def test_a_rejected_entry_is_moved_aside_with_its_reason_and_the_rest_keep_their_order(path):
    outbox = Outbox(path)
    fill(outbox, 4)
    second = outbox.entries()[1]
    outbox.reject(second, 404, "no task 'T1' in this store")
    assert details(outbox.entries()) == ["n0", "n2", "n3"]
    (rejected,) = outbox.rejected()
    assert (rejected.status, rejected.reason) == (404, "no task 'T1' in this store")
    assert rejected.entry.idempotency_key == "key-1" and rejected.entry.body == second.body
    assert rejected.entry.queued_at == second.queued_at


def test_the_outbox_survives_reopening_the_file(path):
    outbox = Outbox(path)
    fill(outbox, 3)
    outbox.reject(outbox.oldest(), 422, "event_type is required")
    del outbox
    reopened = Outbox(path)
    assert details(reopened.entries()) == ["n1", "n2"]
    assert [(r.entry.idempotency_key, r.status) for r in reopened.rejected()] == [("key-0", 422)]
    reopened.add("PATCH", "/api/v1/tasks/T1", {"status": "active"}, "key-later")
    assert [e.idempotency_key for e in Outbox(path).entries()] == ["key-1", "key-2", "key-later"]


def test_only_server_errors_count_towards_setting_an_entry_aside(path):
    outbox = Outbox(path)
    fill(outbox, 1)
    entry = outbox.oldest()
    assert outbox.failed_attempt(entry, "connection refused") == 0
    assert outbox.failed_attempt(entry, "HTTP 500", server_error=True) == 1
    assert outbox.failed_attempt(entry, "HTTP 500", server_error=True) == 2
    assert outbox.pending() == 1  # failing never removes an entry


def test_a_restarted_lobster_finds_its_queued_writes_and_queues_after_them(path):
    with socket.socket() as probe:  # nobody listens here
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    first = Client(url, outbox=path, retries=0)
    answers = [first.add_event("T1", "note", detail=f"n{i}", defer=True) for i in range(3)]
    assert all(isinstance(a, Queued) for a in answers)
    first.close()

    second = Client(url, outbox=path, retries=0)
    second.update_task("T1", status="active", defer=True)
    entries = second.outbox.entries()
    assert [e.idempotency_key for e in entries[:3]] == [a.idempotency_key for a in answers]
    assert (entries[3].method, entries[3].body) == ("PATCH", {"status": "active"})
    result = second.flush()
    assert (result.sent, result.remaining) == (0, 4) and "unavailable" in result.error
