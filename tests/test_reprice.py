"""Re-pricing with provenance: only table-priced events, rollups and budgets kept in step."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from lobstore import ValidationError, open_store
from store_contract import in_threads

MODEL = "acme-1"
JAN = datetime(2026, 1, 1, tzinfo=timezone.utc)
FEB = datetime(2026, 2, 1, tzinfo=timezone.utc)


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 2, day, hour, minute, tzinfo=timezone.utc)


def brute_force(store, since, until):
    """Per (day, model): the events' costs added up one by one."""
    sums: dict[tuple[str, str], int] = defaultdict(int)
    after = 0
    while page := store.costs.list(since=since, until=until, after=after, limit=1000):
        for event in page:
            sums[event.created_at.strftime("%Y-%m-%d"), event.model] += event.cost_micro or 0
        after = page[-1].id
    return dict(sums)


def summarised(store, since, until):
    out = {}
    for day, models in store.costs.daily_by_model(since=since, until=until):
        for totals in models:
            out[day.key, totals.key] = totals.cost_micro
    return out


@pytest.fixture
def priced(store):
    """acme-1 at $1 / $2 per million from 1 February; events on 1-20 February, some reported,
    some before any price (uncosted), one of another model."""
    store.tasks.create(name="t")
    store.costs.set_price(MODEL, input_usd_per_mtok=1, output_usd_per_mtok=2, effective_from=FEB)
    store.costs.record(model=MODEL, input_tokens=1_000_000, created_at=JAN + timedelta(days=3))  # uncosted
    for day in range(1, 21):
        store.costs.record(model=MODEL, task="T1", agent="a", input_tokens=100_000 * day, output_tokens=333,
                           created_at=at(day, minute=day))
        store.costs.record(model=MODEL, input_tokens=10**6, cost_usd=0.5, created_at=at(day, 13))  # reported
        store.costs.record(model="claude-opus-4-6", input_tokens=1000, created_at=at(day, 14))
    return store


def test_a_dry_run_answers_the_change_and_writes_nothing(priced):
    store = priced
    store.costs.set_price(MODEL, input_usd_per_mtok=1.5, output_usd_per_mtok=2, effective_from=at(11, 0))
    before = store.costs.list(limit=1000), summarised(store, JAN, at(28, 0))
    result = store.costs.reprice(MODEL, since=FEB, until=at(28, 0), dry_run=True)
    assert (result.dry_run, result.run_id, result.events, result.changed_events) == (True, None, 20, 10)
    assert [d.day for d in result.days] == [f"2026-02-{d:02d}" for d in range(1, 21)]
    day_15 = result.days[14].to_dict()
    # 1.5M input tokens: $1.50 -> $2.25; 333 output tokens at $2/M: 666 micro-dollars either way
    assert (day_15["old_cost_usd"], day_15["new_cost_usd"], day_15["delta_usd"]) == (1.500666, 2.250666, 0.75)
    assert (store.costs.list(limit=1000), summarised(store, JAN, at(28, 0))) == before
    assert store.costs.reprice_runs() == []


def test_a_run_changes_exactly_the_table_priced_events_and_keeps_every_sum(priced):
    store = priced
    old = {e.id: e for e in store.costs.list(limit=1000)}
    price = store.costs.set_price(MODEL, input_usd_per_mtok=1.5, output_usd_per_mtok=2, effective_from=at(11, 0))
    early = store.costs.set_price(MODEL, input_usd_per_mtok=4, output_usd_per_mtok=4, effective_from=JAN)
    budget = store.budgets.create(scope="task", target="T1", period="total", limit_usd=1000)
    result = store.costs.reprice(MODEL, since=JAN, actor="ops")
    assert result.run_id is not None and set(result.price_ids) == {price.id, early.id, price.id - 1}
    assert (result.events, result.changed_events) == (21, 11)  # 10 after the 11th, and the uncosted one
    new = {e.id: e for e in store.costs.list(limit=1000)}
    changed = {i for i in old if old[i] != new[i]}
    assert changed == {i for i, e in old.items() if e.model == MODEL and e.cost_source != "reported"
                       and (e.created_at >= at(11, 0) or e.uncosted)}
    for i in changed:
        assert new[i].cost_source == "computed" and new[i].price_id in (price.id, early.id)
    assert new[min(old)].cost_micro == 4_000_000  # the uncosted one, at January's price now
    assert summarised(store, JAN, at(28, 0)) == brute_force(store, JAN, at(28, 0))
    assert store.costs.summary(since=JAN, until=at(28, 0)).totals.uncosted_events == 0
    task_total = sum(e.cost_micro for e in new.values() if e.task_ref == "T1")
    assert store.budgets.get(budget.id).spent_micro == task_total  # the budget moved by the delta too
    runs = store.costs.reprice_runs()
    assert [(r.run_id, r.actor, r.changed_events) for r in runs] == [(result.run_id, "ops", 11)]
    again = store.costs.reprice(MODEL, since=JAN)
    assert again.changed_events == 0 and again.old_micro == again.new_micro == result.new_micro
    assert {e.id: e for e in store.costs.list(limit=1000)} == new


def test_bad_reprice_requests_are_named(store):
    for fields, field in [({"since": FEB}, "model"), ({"model": MODEL}, "since"),
                          ({"model": MODEL, "since": "soon"}, "since"),
                          ({"model": MODEL, "since": FEB, "until": JAN}, "since"),
                          ({"model": MODEL, "since": FEB, "dry_run": "maybe"}, "dry_run")]:
        with pytest.raises(ValidationError) as caught:
            store.costs.reprice(**fields)
        assert caught.value.field == field


def test_reprice_over_http(client, api, store):
    store.costs.set_price(MODEL, input_usd_per_mtok=1, output_usd_per_mtok=2, effective_from=FEB)
    store.costs.record(model=MODEL, input_tokens=10**6, created_at=at(2))
    store.costs.set_price(MODEL, input_usd_per_mtok=3, output_usd_per_mtok=2, effective_from=at(2, 0))
    body = {"model": MODEL, "since": "2026-02-01", "until": "2026-03-01"}
    dry = client.post(f"{api}/costs/reprice", {**body, "dry_run": True})
    assert dry.status == 200 and dry.json["run_id"] is None and dry.json["delta_usd"] == 2
    assert dry.json["days"] == [{"day": "2026-02-02", "model": MODEL, "events": 1, "changed_events": 1,
                                 "old_cost_usd": 1, "new_cost_usd": 3, "delta_usd": 2}]
    assert store.costs.list()[0].cost_micro == 1_000_000
    done = client.post(f"{api}/costs/reprice", body)
    assert done.status == 200 and done.json["run_id"] and done.json["changed_events"] == 1
    assert store.costs.list()[0].cost_micro == 3_000_000
    bad = client.post(f"{api}/costs/reprice", {**body, "since": "yesterday-ish"})
    assert bad.status == 422 and bad.json["field"] == "since"


def test_two_reprices_at_once_apply_the_change_once(db_url):
    """Two operators re-price the same model at the same moment: the sums move once."""
    with open_store(db_url) as store:
        store.costs.set_price(MODEL, input_usd_per_mtok=1, output_usd_per_mtok=2, effective_from=FEB)
        for day in range(1, 21):
            for n in range(20):
                store.costs.record(model=MODEL, task=None, agent="a", input_tokens=10_000 * (n + 1),
                                   created_at=at(day, minute=n))
        store.costs.set_price(MODEL, input_usd_per_mtok=3, output_usd_per_mtok=2, effective_from=FEB + timedelta(hours=1))
    barrier, results = threading.Barrier(2), []

    def run(_):
        with open_store(db_url, migrate=False) as own:
            barrier.wait()
            results.append(own.costs.reprice(MODEL, since=JAN))

    assert in_threads(2, run) == []
    assert sorted(r.changed_events for r in results) == [0, 400]
    with open_store(db_url, migrate=False) as store:
        assert summarised(store, JAN, at(28, 0)) == brute_force(store, JAN, at(28, 0))
        total = store.costs.summary(since=JAN, until=at(28, 0)).totals.cost_micro
        assert total == sum(e.cost_micro for e in store.costs.list(limit=1000)) == 3 * 400 * 10_000 * 21 // 2
