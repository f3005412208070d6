"""Claims and heartbeats over HTTP: the routes (through WSGI), and 16 claimers at once against
a real `lobstore serve` on each backend that a URL reaches."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter

from lobstore import open_store
from lobstore.adapters.http import make_app
from lobstore.adapters.http.auth import AuthSettings
from wsgi_client import WsgiClient


def test_claim_answers_the_task_or_204(client, api, store):
    store.tasks.create(name="qa work", type="qa")
    task = store.tasks.create(name="swe work", priority="high")
    answer = client.post(f"{api}/tasks/claim", json={"lobster": "lobster-swe-1", "types": ["swe"]})
    assert answer.status == 200, answer.body
    assert (answer.json["task_id"], answer.json["status"], answer.json["assigned_to"]) == (
        task.ref, "active", "lobster-swe-1")
    assert answer.json["attempts"] == 1 and answer.json["lease_expires_at"] is not None
    assert answer.headers["etag"]
    empty = client.post(f"{api}/tasks/claim", json={"lobster": "lobster-swe-2", "types": ["swe"]})
    assert (empty.status, empty.body) == (204, b"")


def test_a_bad_claim_is_a_422_naming_the_field(client, api, store):
    store.tasks.create(name="work")
    for body, field in (({}, "lobster"), ({"lobster": "l", "lease_seconds": "long"}, "lease_seconds"),
                        ({"lobster": "l", "lease_seconds": 10**6}, "lease_seconds"), ({"lobster": "l", "x": 1}, "x")):
        answer = client.post(f"{api}/tasks/claim", json=body)
        assert answer.status == 422 and answer.json["field"] == field, answer.body
    assert store.tasks.get(1).status == "queued"


def test_a_claim_repeated_with_its_idempotency_key_takes_one_task(client, store):
    for n in range(2):
        store.tasks.create(name=f"work {n}")
    headers = {"Idempotency-Key": "claim-lobster-1-0001"}
    first = client.post("/api/v1/tasks/claim", json={"lobster": "l1"}, headers=headers)
    again = client.post("/api/v1/tasks/claim", json={"lobster": "l1"}, headers=headers)
    assert first.json["task_id"] == again.json["task_id"] and again.headers["idempotent-replayed"] == "true"
    assert store.tasks.count(status="queued") == 1


def test_heartbeat_extends_the_lease_or_says_the_task_is_lost(client, api, store):
    store.tasks.create(name="work")
    task = store.tasks.claim(lobster="l1", lease_seconds=30)
    answer = client.post(f"{api}/tasks/{task.ref}/heartbeat", json={"lobster": "l1", "lease_seconds": 600})
    assert answer.status == 200, answer.body
    assert answer.json["lease_expires_at"] > task.to_dict()["lease_expires_at"]
    assert client.post(f"{api}/tasks/{task.ref}/heartbeat").status == 200  # no body: the default lease
    lost = client.post(f"{api}/tasks/{task.ref}/heartbeat", json={"lobster": "l2"})
    assert lost.status == 409 and "assigned to 'l1'" in lost.json["error"]
    assert client.post(f"{api}/tasks/T999/heartbeat", json={}).status == 404


def test_a_lobster_heartbeats_and_sets_review_pr_with_its_task_credential(store):
    client = WsgiClient(make_app(store, auth=AuthSettings()))
    lobboss = {"Authorization": f"Bearer {store.credentials.create('lobboss', scopes=['write']).secret}"}
    for n in range(2):
        store.tasks.create(name=f"work {n}")
    mine = client.post("/api/v1/tasks/claim", json={"lobster": "l1"}, headers=lobboss).json["task_id"]
    other = store.tasks.claim(lobster="l2").ref
    store.broker.register(mine, repos=["minsley/lobmob"])  # a task credential lives with the registration
    lobster = {"Authorization": f"Bearer {store.credentials.create_for_task(mine).secret}"}
    assert client.post(f"/api/v1/tasks/{mine}/heartbeat", json={"lobster": "l1"}, headers=lobster).status == 200
    assert client.post(f"/api/v1/tasks/{other}/heartbeat", json={}, headers=lobster).status == 403
    assert client.post("/api/v1/tasks/claim", json={"lobster": "l1"}, headers=lobster).status == 403
    patched = client.patch(f"/api/v1/tasks/{mine}", json={"review_pr": "https://github.com/o/r/pull/1", "actor": "l1"},
                           headers=lobster)
    assert patched.status == 200 and patched.json["task"]["review_pr"] == "https://github.com/o/r/pull/1"


# -- 16 claimers at once, over real HTTP -----------------------------------------------------------
CLAIMERS, CLAIMS_EACH, TASKS = 16, 100, 1000


def test_sixteen_claimers_claim_every_task_exactly_once(db_url, servers):
    with open_store(db_url) as store, store.transaction() as tx:
        for n in range(TASKS):
            tx.tasks.create(name=f"task {n}", priority=("low", "normal", "high", "critical")[n % 4])
    server = servers(db_url)
    claimed: list[list[str]] = [[] for _ in range(CLAIMERS)]
    errors: list[str] = []
    empty = Counter()

    def claimer(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            for _ in range(CLAIMS_EACH):
                body = json.dumps({"lobster": f"lobster-{index}"})
                conn.request("POST", "/api/v1/tasks/claim", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                raw = response.read()
                if response.status == 200:
                    claimed[index].append(json.loads(raw)["task_id"])
                elif response.status == 204:
                    empty[index] += 1
                else:
                    errors.append(f"{response.status}: {raw[:200]!r}")
        except Exception as exc:  # noqa: BLE001 - counted, the test says what went wrong
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    every = [ref for refs in claimed for ref in refs]
    assert errors == []
    assert len(every) == TASKS and len(set(every)) == TASKS  # each task once
    assert sum(empty.values()) == CLAIMERS * CLAIMS_EACH - TASKS
    with open_store(db_url) as store:
        assert store.tasks.count_by("status") == {"active": TASKS}
        owners = {t.ref: t.assigned_to for t in store.tasks.list(limit=1000)}
        for index, refs in enumerate(claimed):
            assert all(owners[ref] == f"lobster-{index}" for ref in refs)
        assert {t.attempts for t in store.tasks.list(limit=1000)} == {1}
