"""Budgets: counted in the ingest transaction, alerts once per period, hard task budgets."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from lobstore import NotFoundError, ValidationError, open_store
from lobstore.clock import utcnow

OPUS = "claude-opus-4-6"
DAY = datetime(2026, 3, 4, tzinfo=timezone.utc)  # a Wednesday


def dollars(store, amount, **fields):
    return store.costs.record(model=fields.pop("model", OPUS), cost_usd=amount, **fields)


def test_a_budget_is_checked_and_listed(store):
    store.tasks.create(name="x")
    budget = store.budgets.create(scope="task", target="T1", period="total", limit_usd=2.5, hard=True, actor="ops")
    data = budget.to_dict()
    assert (data["scope"], data["target"], data["period"], data["limit_usd"], data["hard"]) == ("task", "T1", "total", 2.5, True)
    assert (data["spent_usd"], data["state"]) == (0, "ok")
    assert [b.id for b in store.budgets.list()] == [budget.id]
    for bad, field in [({"scope": "team", "period": "day", "limit_usd": 1}, "scope"),
                       ({"scope": "fleet", "period": "year", "limit_usd": 1}, "period"),
                       ({"scope": "fleet", "period": "day", "limit_usd": 0}, "limit_usd"),
                       ({"scope": "fleet", "period": "day", "limit_usd": "lots"}, "limit_usd"),
                       ({"scope": "fleet", "target": "x", "period": "day", "limit_usd": 1}, "target"),
                       ({"scope": "model", "period": "day", "limit_usd": 1}, "target")]:
        with pytest.raises(ValidationError) as caught:
            store.budgets.create(**bad)
        assert caught.value.field == field
    with pytest.raises(NotFoundError):
        store.budgets.create(scope="task", target="T99", period="day", limit_usd=1)
    assert len(store.budgets.list()) == 1  # the refused ones left nothing behind
    store.budgets.remove(budget.id, actor="ops")
    assert store.budgets.list() == [] and store.budgets.list(include_removed=True)[0].removed_at is not None
    with pytest.raises(NotFoundError):
        store.budgets.remove(budget.id)


def test_crossing_80_and_100_percent_writes_one_alert_finding_and_task_event_each(store):
    store.tasks.create(name="spender")
    budget = store.budgets.create(scope="task", target="T1", period="total", limit_usd=10)
    dollars(store, 7.99, task="T1")
    assert store.budgets.alerts() == []
    dollars(store, 0.01, task="T1")  # exactly 80 %
    dollars(store, 1, task="T1")
    dollars(store, 1, task="T1")  # 100 %
    for _ in range(3):
        dollars(store, 5, task="T1")  # far over: no more alerts
    dollars(store, 5)  # not the task's
    alerts = store.budgets.alerts()
    assert [(a.budget_id, a.threshold, a.spent_micro) for a in alerts] == [(budget.id, 80, 8_000_000), (budget.id, 100, 10_000_000)]
    findings = store.audits.list(audit_type="budget")
    assert sorted(f.severity for f in findings) == ["critical", "warning"]
    assert all("task T1" in f.title for f in findings)
    events = [e for e in store.events.for_task("T1") if e.event_type == "budget_alert"]
    assert [e.data["threshold"] for e in events] == [80, 100]
    assert store.budgets.get(budget.id).spent_micro == 25_000_000
    assert store.budgets.for_task("T1").state == "over"  # advisory: flagged, not exhausted


def test_a_hard_task_budget_answers_exhausted_and_ingest_still_records(store):
    store.tasks.create(name="a", type="swe")
    store.tasks.create(name="b", type="qa")
    store.budgets.create(scope="task", target="T1", period="day", limit_usd=1, hard=True)
    store.budgets.create(scope="task_type", target="qa", period="day", limit_usd=100)
    assert store.budgets.for_task("T1").state == "ok"
    dollars(store, 0.9, task="T1")
    assert store.budgets.for_task("T1").state == "warning"
    event = dollars(store, 0.5, task="T1")
    assert event.cost_micro == 500_000  # recorded: the money is spent
    answer = store.budgets.for_task("T1").to_dict()
    assert answer["state"] == "exhausted" and answer["budgets"][0]["spent_usd"] == 1.4
    assert [b["scope"] for b in store.budgets.for_task("T2").to_dict()["budgets"]] == ["task_type"]
    assert store.budgets.for_task("T2").state == "ok"


def test_scopes_count_only_their_events(store):
    store.tasks.create(name="a", type="swe")
    made = {scope: store.budgets.create(scope=scope, target=target, period="month", limit_usd=100)
            for scope, target in [("fleet", None), ("model", OPUS), ("agent", "lobster-1"), ("task_type", "swe")]}
    dollars(store, 1, task="T1", agent="lobster-1")  # one event: charged in one statement
    store.costs.record_many([{"model": "claude-haiku-4-5", "agent": "lobster-2", "cost_usd": 2},  # a batch
                             {"model": OPUS, "agent": "lobster-1", "cost_usd": 4},
                             {"model": OPUS, "task": "T1", "cost_usd": 8}])
    spent = {b.scope: b.spent_micro for b in store.budgets.list()}
    assert spent == {"fleet": 15_000_000, "model": 13_000_000, "agent": 5_000_000, "task_type": 9_000_000}
    assert len(made) == 4


def test_a_new_budget_counts_what_its_period_already_spent(store):
    dollars(store, 3, created_at=utcnow())
    dollars(store, 50, created_at=utcnow() - timedelta(days=40))  # an earlier month
    budget = store.budgets.create(scope="fleet", period="month", limit_usd=3.5)
    assert budget.spent_micro == 3_000_000 and budget.state == "warning"
    assert [a.threshold for a in store.budgets.alerts()] == [80]


def test_daily_budgets_roll_over_at_utc_midnight(store):
    budget = store.budgets.create(scope="fleet", period="day", limit_usd=10)
    week = store.budgets.create(scope="fleet", period="week", limit_usd=1000)
    before = DAY - timedelta(seconds=1)
    dollars(store, 7.5, created_at=before)
    dollars(store, 7.5, created_at=DAY)  # the next day: a fresh period, no crossing
    assert store.budgets.alerts() == []
    dollars(store, 3, created_at=before)
    dollars(store, 3, created_at=DAY + timedelta(hours=23, minutes=59, seconds=59))
    alerts = store.budgets.alerts(budget_id=budget.id)
    assert sorted((a.period_start, a.threshold) for a in alerts) == [
        (DAY - timedelta(days=1), 80), (DAY - timedelta(days=1), 100), (DAY, 80), (DAY, 100)]
    assert store.budgets.alerts(budget_id=week.id) == []  # Monday 2 March to 9 March: $21 of $1000


def test_16_writers_racing_across_a_daily_budget_alert_once_and_count_exactly(db_url):
    """LiteLLM's check-then-spend races; here the spend row is locked by each ingest."""
    with open_store(db_url) as store:
        budget = store.budgets.create(scope="fleet", period="day", limit_usd=50)
    now = utcnow()
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def writer(n: int) -> None:
        try:
            with open_store(db_url, migrate=False) as mine:
                start.wait()
                event = {"model": OPUS, "cost_usd": "0.500001", "agent": f"w{n}", "created_at": now}
                for i in range(8 if n % 2 else 4):  # single events and batches of two: both charge
                    if n % 2:
                        mine.costs.record(**event)
                    else:
                        mine.costs.record_many([event, event])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with open_store(db_url, migrate=False) as store:
        assert store.budgets.get(budget.id).spent_micro == 16 * 8 * 500_001
        assert store.costs.summary(since=now, until=now + timedelta(seconds=1)).totals.cost_micro == 16 * 8 * 500_001
        assert sorted(a.threshold for a in store.budgets.alerts()) == [80, 100]
        assert sorted(f.severity for f in store.audits.list(audit_type="budget")) == ["critical", "warning"]


# -- over HTTP ----------------------------------------------------------------------------------
def test_budgets_over_http(client, api):
    from wsgi_client import assert_error

    client.post(f"{api}/tasks", {"name": "spender"})
    made = client.post(f"{api}/budgets", {"scope": "task", "target": "T1", "period": "day", "limit_usd": 1,
                                           "hard": True, "actor": "ops"})
    assert made.status == 201 and made.json["target"] == "T1" and made.json["state"] == "ok"
    assert_error(client.post(f"{api}/budgets", {"scope": "fleet", "period": "day", "limit_usd": -1}), 422,
                 field="limit_usd")
    assert_error(client.post(f"{api}/budgets", {"scope": "fleet", "period": "day", "limit_usd": 1, "owner": "x"}),
                 422, field="owner")
    assert_error(client.post(f"{api}/budgets", {"scope": "task", "target": "T9", "period": "day", "limit_usd": 1}),
                 404)
    assert client.get(f"{api}/tasks/T1/budget").json["state"] == "ok"
    client.post(f"{api}/costs", {"task_id": "T1", "model": OPUS, "cost_usd": 1.25})
    answer = client.get(f"{api}/tasks/T1/budget").json
    assert answer["state"] == "exhausted" and answer["budgets"][0]["spent_usd"] == 1.25
    alerts = client.get(f"{api}/budgets/alerts").json
    assert [a["threshold"] for a in alerts] == [80, 100] and alerts[1]["limit_usd"] == 1
    assert client.get(f"{api}/budgets/alerts?after={alerts[0]['id']}").json == alerts[1:]
    assert_error(client.get(f"{api}/budgets/alerts?after=x"), 422, field="after")
    assert [b["id"] for b in client.get(f"{api}/budgets").json] == [made.json["id"]]
    assert client.delete(f"{api}/budgets/{made.json['id']}").json["removed_at"] is not None
    assert_error(client.delete(f"{api}/budgets/{made.json['id']}"), 404)
    assert_error(client.delete(f"{api}/budgets/nope"), 404)
    assert client.get(f"{api}/budgets").json == []
    assert client.get(f"{api}/tasks/T1/budget").json["state"] == "ok"
