"""Cost events and audit findings: the rules every backend keeps, run against each by
test_costs_audits.py (the ``store`` fixture of conftest.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lobstore import ConflictError, NotFoundError, ValidationError
from lobstore.clock import utcnow

OPUS, SONNET, HAIKU = "claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5"
FEB = datetime(2026, 2, 15, 12, 0, tzinfo=timezone.utc)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 2, day, hour, tzinfo=timezone.utc)


class CostsContract:
    __test__ = False

    def all_events(self, store):
        return store.costs.list(limit=1000)

    # -- recording and costing ---------------------------------------------------------------
    def test_recorded_event_is_costed_at_the_seeded_price(self, store):
        store.tasks.create(name="x")
        event = store.costs.record(task="T1", model=OPUS, agent="lobster-swe-t1",
                                   input_tokens=1200, output_tokens=300)
        # 1200 * $5/M + 300 * $25/M = $0.006 + $0.0075
        assert event.cost_micro == 13_500 and event.cost_source == "computed"
        data = event.to_dict()
        assert data["id"] == event.id and data["task_id"] == "T1"
        assert data["cost_usd"] == 0.0135 and data["uncosted"] is False
        assert data["price_id"] == store.costs.current_prices()[1].id  # opus, sorted by model
        assert store.costs.get(event.id) == event

    def test_seeded_prices_per_million_tokens(self, store):
        prices = {p.model: p.to_dict() for p in store.costs.current_prices()}
        assert {m: (p["input_usd_per_mtok"], p["output_usd_per_mtok"]) for m, p in prices.items()} == {
            OPUS: (5, 25), SONNET: (3, 15), HAIKU: (0.8, 4)}
        assert (prices[SONNET]["cache_read_usd_per_mtok"], prices[SONNET]["cache_write_usd_per_mtok"]) == (0.3, 3.75)

    def test_cache_tokens_are_priced(self, store):
        event = store.costs.record(model=SONNET, cache_read_tokens=1_000_000, cache_write_tokens=1_000_000,
                                   created_at=FEB)
        assert event.to_dict()["cost_usd"] == 0.3 + 3.75

    def test_reported_cost_wins_over_the_price_table(self, store):
        event = store.costs.record(model=OPUS, input_tokens=1_000_000, cost_usd=0.25)
        assert (event.cost_micro, event.cost_source, event.price_id) == (250_000, "reported", None)

    def test_a_batch_returns_each_event_as_stored_in_order(self, store):
        store.tasks.create(name="x")
        store.costs.record(model=OPUS)  # ids of the batch do not start at 1
        sent = [{"model": HAIKU, "input_tokens": n, "task_id": "T1" if n % 2 else None} for n in range(1, 301)]
        events = store.costs.record_many(sent)
        assert [e.input_tokens for e in events] == list(range(1, 301))
        assert [e.id for e in events] == sorted({e.id for e in events}) and events[0].id > 1
        assert events == self.all_events(store)[1:]
        assert events[0].to_dict()["task_id"] == "T1" and events[1].to_dict()["task_id"] is None

    def test_a_thousand_millionths_sum_to_exactly_a_thousandth(self, store):
        store.tasks.create(name="x")
        store.costs.record_many([{"task_id": "T1", "model": "m", "cost_usd": 0.000001}] * 1000)
        summary = store.costs.summary()
        assert summary.totals.cost_micro == 1000 and summary.to_dict()["cost_usd"] == 0.001
        assert summary.totals.events == 1000
        assert store.costs.for_task("T1").to_dict()["cost_usd"] == 0.001

    def test_cost_is_computed_at_the_price_in_effect_at_the_events_time(self, store):
        new = store.costs.set_price(SONNET, input_usd_per_mtok=6, output_usd_per_mtok=30,
                                    effective_from="2026-02-20T00:00:00Z", actor="lead")
        before = store.costs.record(model=SONNET, input_tokens=1_000_000, created_at=at(19, 23))
        after = store.costs.record(model=SONNET, input_tokens=1_000_000, created_at=at(20, 0))
        assert before.cost_micro == 3_000_000 and before.price_id != new.id
        assert after.cost_micro == 6_000_000 and after.price_id == new.id
        # Defaults for cache prices: 0.1 and 1.25 times input.
        assert (new.cache_read_micro_per_mtok, new.cache_write_micro_per_mtok) == (600_000, 7_500_000)
        assert [p.effective_from for p in store.costs.prices(SONNET)][-1] == at(20, 0)
        assert store.costs.current_prices(at=at(19))[2].id == before.price_id

    def test_a_model_without_a_price_is_stored_uncosted(self, store):
        event = store.costs.record(model="gpt-9", input_tokens=10, output_tokens=5)
        assert event.uncosted and event.to_dict()["cost_usd"] is None and event.cost_source == "uncosted"
        early = store.costs.record(model=OPUS, input_tokens=10, created_at="2024-06-01T00:00:00Z")
        assert early.uncosted  # before the first price took effect
        summary = store.costs.summary(since="2024-01-01T00:00:00Z", group_by="model")
        assert summary.totals.events == 2 and summary.totals.uncosted_events == 2
        assert summary.totals.input_tokens == 20 and summary.totals.cost_micro == 0

    def test_request_id_is_idempotent(self, store):
        first = store.costs.record(model=OPUS, input_tokens=100, request_id="req-1")
        again = store.costs.record(model=OPUS, input_tokens=999, request_id="req-1")
        assert again == first and again.duplicate and not first.duplicate
        batch = store.costs.record_many([
            {"model": OPUS, "input_tokens": 1, "request_id": "req-1"},
            {"model": OPUS, "input_tokens": 2, "request_id": "req-2"},
            {"model": OPUS, "input_tokens": 3, "request_id": "req-2"},
        ])
        assert [e.id for e in batch] == [first.id, batch[1].id, batch[1].id]
        assert [e.duplicate for e in batch] == [True, False, True]
        assert [e.input_tokens for e in self.all_events(store)] == [100, 2]
        assert store.costs.summary().totals.events == 2

    def test_one_request_id_posted_by_many_at_once_is_stored_once(self, store):
        from store_contract import in_threads

        answers = []
        errors = in_threads(8, lambda n: answers.append(
            store.costs.record(model=OPUS, input_tokens=1000, request_id="msg_same")))
        assert errors == []
        assert len({a.id for a in answers}) == 1 and sum(not a.duplicate for a in answers) == 1
        assert len(self.all_events(store)) == 1
        assert store.costs.summary(period="day").totals.events == 1

    def test_batch_is_all_or_nothing_and_names_the_bad_event(self, store):
        store.tasks.create(name="x")
        good = {"model": OPUS, "input_tokens": 5, "task_id": "T1"}
        cases = [
            ({"model": OPUS, "input_tokens": -1}, 1, "input_tokens"),
            ({"model": OPUS, "input_tokens": 1.5}, 1, "input_tokens"),
            ({"input_tokens": 1}, 1, "model"),
            ({"model": OPUS, "task_id": "T99"}, 1, "task_id"),
            ({"model": OPUS, "cost_usd": -0.1}, 1, "cost_usd"),
            ({"model": OPUS, "cost_usd": "lots"}, 1, "cost_usd"),
            ({"model": OPUS, "colour": "red"}, 1, "colour"),
            ({"model": OPUS, "created_at": "yesterday"}, 1, "created_at"),
        ]
        for bad, index, field in cases:
            with pytest.raises(ValidationError) as info:
                store.costs.record_many([good, bad, good])
            assert (info.value.field, info.value.details["index"]) == (field, index), bad
            assert f"cost event {index}" in str(info.value) and field in str(info.value)
            assert info.value.to_dict()["index"] == index
        assert self.all_events(store) == []

    @pytest.mark.parametrize(("events", "message"), [
        ([], "1 to 1000"), ({"model": OPUS}, "list"), ("x", "list"), ([{"model": OPUS}] * 1001, "1001"),
        ([{"model": OPUS}, 5], "cost event 1"),
    ])
    def test_batch_shape_is_checked(self, store, events, message):
        with pytest.raises(ValidationError, match=message) as info:
            store.costs.record_many(events)
        assert info.value.field == "events"
        assert self.all_events(store) == []

    @pytest.mark.parametrize(("fields", "field"), [
        ({"model": ""}, "model"),
        ({"model": OPUS, "output_tokens": "10"}, "output_tokens"),
        ({"model": OPUS, "cache_read_tokens": True}, "cache_read_tokens"),
        ({"model": OPUS, "agent": 7}, "agent"),
        ({"model": OPUS, "request_id": ["a"]}, "request_id"),
        ({"model": OPUS, "cost_usd": float("nan")}, "cost_usd"),
        ({"model": OPUS, "task": "T1", "task_id": "T1"}, "task"),
        ({"model": OPUS, "task_id": "nope"}, "task_id"),
        ({"model": OPUS, "task_id": True}, "task_id"),
        ({"model": OPUS, "task_id": ["T1"]}, "task_id"),
        ({"model": OPUS, "task_id": 0}, "task_id"),
    ])
    def test_invalid_event_names_the_field_and_writes_nothing(self, store, fields, field):
        with pytest.raises(ValidationError) as info:
            store.costs.record(**fields)
        assert info.value.field == field and "index" not in info.value.details
        assert self.all_events(store) == []

    def test_recording_inside_a_transaction_rolls_back_with_it(self, store):
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                task = tx.tasks.create(name="x")
                tx.costs.record(task=task.id, model=OPUS, input_tokens=1)
                raise RuntimeError
        assert self.all_events(store) == []
        with store.transaction() as tx:
            task = tx.tasks.create(name="y")
            tx.costs.record(task=task.ref, model=OPUS, input_tokens=1)
        assert [e.task_ref for e in self.all_events(store)] == [task.ref]

    # -- prices --------------------------------------------------------------------------------
    @pytest.mark.parametrize(("fields", "field"), [
        ({"input_usd_per_mtok": 0.000003, "output_usd_per_mtok": 15}, "input_usd_per_mtok"),
        ({"input_usd_per_mtok": 3, "output_usd_per_mtok": 0.000015}, "output_usd_per_mtok"),
        ({"input_usd_per_mtok": 3, "output_usd_per_mtok": 15, "cache_read_usd_per_mtok": 3e-7},
         "cache_read_usd_per_mtok"),
        ({"input_usd_per_mtok": 3, "output_usd_per_mtok": 15_000_000}, "output_usd_per_mtok"),
        ({"input_usd_per_mtok": -3, "output_usd_per_mtok": 15}, "input_usd_per_mtok"),
        ({"input_usd_per_mtok": 3.0000001, "output_usd_per_mtok": 15}, "input_usd_per_mtok"),
        ({"output_usd_per_mtok": 15}, "input_usd_per_mtok"),
        ({"input_usd_per_mtok": 3, "output_usd_per_mtok": 15, "effective_from": "soon"}, "effective_from"),
    ])
    def test_bad_prices_are_refused(self, store, fields, field):
        before = store.costs.prices()
        with pytest.raises(ValidationError) as info:
            store.costs.set_price("new-model", **fields)
        assert info.value.field == field
        if field == "input_usd_per_mtok" and fields.get("input_usd_per_mtok") == 0.000003:
            assert "per MILLION" in str(info.value)
        assert store.costs.prices() == before

    def test_two_prices_from_the_same_moment_conflict(self, store):
        store.costs.set_price("m", input_usd_per_mtok=1, output_usd_per_mtok=2, effective_from=FEB)
        with pytest.raises(ConflictError, match="already has a price"):
            store.costs.set_price("m", input_usd_per_mtok=9, output_usd_per_mtok=9, effective_from=FEB)
        assert [p.input_micro_per_mtok for p in store.costs.prices("m")] == [1_000_000]

    def test_a_new_model_priced_later_costs_only_later_events(self, store):
        store.costs.record(model="m", input_tokens=1_000_000)
        store.costs.set_price("m", input_usd_per_mtok=0.5, output_usd_per_mtok=1,
                              effective_from=utcnow() - timedelta(hours=1))
        later = store.costs.record(model="m", input_tokens=1_000_000)
        assert [e.cost_micro for e in self.all_events(store)] == [None, 500_000]
        assert later.to_dict()["cost_usd"] == 0.5

    # -- summaries -----------------------------------------------------------------------------
    def fill(self, store):
        swe = store.tasks.create(name="swe task", type="swe")
        research = store.tasks.create(name="research task", type="research")
        store.costs.record_many([
            {"task_id": swe.ref, "model": OPUS, "agent": "lobster-swe-t1", "cost_usd": 1, "created_at": at(10, 1)},
            {"task_id": swe.ref, "model": SONNET, "agent": "lobster-swe-t1", "cost_usd": 2, "created_at": at(10, 23)},
            {"task_id": research.ref, "model": OPUS, "agent": "lobster-research-t2", "cost_usd": 4,
             "input_tokens": 7, "output_tokens": 3, "created_at": at(11, 0)},
            {"model": HAIKU, "agent": "lobboss", "cost_usd": 8, "created_at": at(12, 5)},
            {"model": "gpt-9", "agent": "lobboss", "input_tokens": 11, "created_at": at(12, 6)},
        ])

    @pytest.mark.parametrize(("group_by", "expected"), [
        ("model", [(HAIKU, 8, 1), (OPUS, 5, 2), (SONNET, 2, 1), ("gpt-9", 0, 1)]),
        ("task", [(None, 8, 2), ("T2", 4, 1), ("T1", 3, 2)]),
        ("agent", [("lobboss", 8, 2), ("lobster-research-t2", 4, 1), ("lobster-swe-t1", 3, 2)]),
        ("task_type", [(None, 8, 2), ("research", 4, 1), ("swe", 3, 2)]),
        ("day", [("2026-02-10", 3, 2), ("2026-02-11", 4, 1), ("2026-02-12", 8, 2)]),
    ])
    def test_each_grouping(self, store, group_by, expected):
        self.fill(store)
        summary = store.costs.summary(since="2026-02-01T00:00:00Z", until="2026-03-01T00:00:00Z", group_by=group_by)
        data = summary.to_dict()
        assert [(g["key"], g["cost_usd"], g["events"]) for g in data["groups"]] == expected
        assert (data["cost_usd"], data["events"], data["uncosted_events"]) == (15, 5, 1)
        assert (data["input_tokens"], data["output_tokens"]) == (18, 3)
        assert (data["since"], data["until"], data["group_by"]) == (
            "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", group_by)

    def test_since_is_inclusive_until_exclusive_and_filters_apply(self, store):
        self.fill(store)
        summary = store.costs.summary(since=at(10, 23), until=at(12, 5))
        assert (summary.totals.cost_micro, summary.totals.events, summary.groups) == (6_000_000, 2, ())
        assert store.costs.summary(since=at(1), until=at(28), model=OPUS).totals.events == 2
        assert store.costs.summary(since=at(1), until=at(28), agent="lobboss").totals.cost_micro == 8_000_000
        assert store.costs.summary(since=at(1), until=at(28), task="T1").totals.events == 2

    def test_periods_are_the_last_day_week_and_month(self, store):
        now = utcnow()
        store.costs.record_many([
            {"model": OPUS, "cost_usd": amount, "created_at": now - age}
            for amount, age in ((1, timedelta(0)), (2, timedelta(hours=23)), (4, timedelta(days=6)),
                                (8, timedelta(days=29)), (16, timedelta(days=31)))
        ])
        assert store.costs.summary().totals.cost_micro == 3_000_000  # a day by default
        assert store.costs.summary(period="day").totals.cost_micro == 3_000_000
        assert store.costs.summary(period="week").totals.cost_micro == 7_000_000
        month = store.costs.summary(period="month")
        assert month.totals.cost_micro == 15_000_000
        assert month.until - month.since == timedelta(days=30)
        assert store.costs.summary(since=now - timedelta(days=40)).totals.cost_micro == 31_000_000

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"period": "year"}, "period"),
        ({"period": "day", "since": "2026-02-01"}, "period"),
        ({"group_by": "colour"}, "group_by"),
        ({"since": "last tuesday"}, "since"),
        ({"since": "2026-03-01", "until": "2026-02-01"}, "since"),
        ({"model": ""}, "model"),
    ])
    def test_bad_summary_requests_name_the_field(self, store, kwargs, field):
        with pytest.raises(ValidationError) as info:
            store.costs.summary(**kwargs)
        assert info.value.field == field

    def test_task_totals_split_by_model(self, store):
        self.fill(store)
        totals = store.costs.for_task("t1").to_dict()
        assert (totals["task_id"], totals["cost_usd"], totals["events"]) == ("T1", 3, 2)
        assert [(m["key"], m["cost_usd"]) for m in totals["models"]] == [(SONNET, 2), (OPUS, 1)]
        empty = store.tasks.create(name="no costs yet")
        assert store.costs.for_task(empty.id).to_dict() | {"models": None} == {
            "task_id": empty.ref, "cost_usd": 0, "input_tokens": 0, "output_tokens": 0,
            "cache_read_tokens": 0, "cache_write_tokens": 0, "events": 0, "uncosted_events": 0, "models": None}
        with pytest.raises(NotFoundError):
            store.costs.for_task("T99")

    def test_list_filters_and_pages(self, store):
        self.fill(store)
        assert [e.model for e in store.costs.list(task="T1")] == [OPUS, SONNET]
        assert [e.agent for e in store.costs.list(model=HAIKU)] == ["lobboss"]
        assert len(store.costs.list(since=at(11, 0), until=at(12, 6))) == 2
        first = store.costs.list(limit=2)
        rest = store.costs.list(after=first[-1].id)
        assert [e.id for e in first + rest] == [e.id for e in self.all_events(store)] and len(rest) == 3

    # -- hourly rollups: summaries over whole hours read them, partial hours read the events ----
    def spread(self, store):
        """Events at uneven minutes over three days, some uncosted, recorded in several batches."""
        events = []
        for n in range(120):
            when = at(10) + timedelta(minutes=37 * n, seconds=n % 60)
            model = (OPUS, SONNET, HAIKU, "no-price-model")[n % 4]
            events.append({"model": model, "input_tokens": 100 + n, "output_tokens": 10 * n,
                           "cache_read_tokens": n % 7, "created_at": when, "agent": f"a{n % 3}"})
        for start in range(0, len(events), 50):
            store.costs.record_many(events[start:start + 50])
        return self.all_events(store)

    @staticmethod
    def brute_force(events, since, until, key):
        groups = {}
        for e in events:
            if since <= e.created_at < until:
                g = groups.setdefault(key(e), [0, 0, 0, 0])
                g[0] += e.cost_micro or 0
                g[1] += e.input_tokens
                g[2] += 1
                g[3] += e.uncosted
        return groups

    @pytest.mark.parametrize(("since", "until"), [
        (at(10, 0), at(13, 0)),                                           # everything, whole hours
        (at(10, 13) + timedelta(minutes=7), at(12, 5) + timedelta(minutes=59, seconds=59)),  # ragged ends
        (at(11, 3) + timedelta(minutes=20), at(11, 3) + timedelta(minutes=50)),  # inside one hour
        (at(10, 23) + timedelta(minutes=1), at(11, 1)),                   # across midnight
    ])
    @pytest.mark.parametrize("group_by", [None, "model", "day"])
    def test_summaries_equal_the_sum_of_their_events(self, store, since, until, group_by):
        events = self.spread(store)
        key = {None: lambda e: None, "model": lambda e: e.model,
               "day": lambda e: e.created_at.strftime("%Y-%m-%d")}[group_by]
        expected = self.brute_force(events, since, until, key)
        summary = store.costs.summary(since=since, until=until, group_by=group_by)
        if group_by is None:
            got = {None: summary.totals}
        else:
            got = {g.key: g for g in summary.groups}
        assert {k: [t.cost_micro, t.input_tokens, t.events, t.uncosted_events] for k, t in got.items()
                if t.events} == expected
        filtered = store.costs.summary(since=since, until=until, group_by=group_by, model=SONNET)
        assert filtered.totals.events == sum(1 for e in events if e.model == SONNET and since <= e.created_at < until)

    @pytest.mark.parametrize(("since", "until"), [
        (at(10, 0), at(13, 0)),                                           # whole hours (the cost page)
        (at(10, 13) + timedelta(minutes=7), at(12, 5) + timedelta(minutes=59, seconds=59)),  # ragged ends
        (at(10, 23) + timedelta(minutes=1), at(11, 1)),                   # across midnight
    ])
    def test_daily_by_model_equals_a_summary_per_day(self, store, since, until):
        events = self.spread(store)
        days = store.costs.daily_by_model(since=since, until=until)
        expected = self.brute_force(events, since, until, lambda e: e.created_at.strftime("%Y-%m-%d"))
        assert [day.key for day, _ in days] == sorted(expected)
        for day, models in days:
            assert [day.cost_micro, day.input_tokens, day.events, day.uncosted_events] == expected[day.key]
            start = max(since, datetime.fromisoformat(f"{day.key}T00:00:00+00:00"))
            end = min(until, start.replace(hour=0, minute=0, second=0) + timedelta(days=1))
            assert list(models) == list(store.costs.summary(since=start, until=end, group_by="model").groups)
        assert store.costs.daily_by_model(since=at(20), until=at(21)) == []
        with pytest.raises(ValidationError):
            store.costs.daily_by_model(since=at(12), until=at(11))

    def test_rollups_roll_back_with_their_events(self, store):
        self.spread(store)
        before = store.costs.summary(since=at(10, 0), until=at(13, 0)).totals
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                tx.costs.record_many([{"model": OPUS, "input_tokens": 5, "created_at": at(11, 4)}] * 3)
                raise RuntimeError("abandoned")
        assert store.costs.summary(since=at(10, 0), until=at(13, 0)).totals == before


class AuditsContract:
    __test__ = False

    def test_a_run_creates_findings_with_derived_fingerprints(self, store):
        result = store.audits.submit("task-hygiene", [
            {"severity": "warning", "title": "stale task", "target": "T9", "detail": "queued 30 days"},
            {"severity": "info", "title": "stale task", "target": "T10"},
        ], run_id="run-1")
        assert [f.target for f in result.created] == ["T9", "T10"]
        first, second = result.created
        assert first.fingerprint != second.fingerprint and len(first.fingerprint) == 32
        data = first.to_dict()
        assert {k: data[k] for k in ("audit_type", "severity", "status", "occurrences", "fix_task_id")} == {
            "audit_type": "task-hygiene", "severity": "warning", "status": "open", "occurrences": 1,
            "fix_task_id": None}
        assert data["first_seen_at"].endswith("Z") and data["resolved_at"] is None
        assert result.to_dict()["updated"] == [] and result.tasks == ()

    def test_runs_at_once_count_every_occurrence(self, store):
        from store_contract import in_threads

        store.audits.submit("security", [{"severity": "warning", "title": "old key", "target": "a/b"}])
        errors = in_threads(6, lambda n: store.audits.submit(
            "security", [{"severity": "warning", "title": "old key", "target": "a/b"}]))
        assert errors == []
        (finding,) = store.audits.list()
        assert finding.occurrences == 7

    def test_a_recurring_finding_is_updated_not_duplicated(self, store):
        finding = {"severity": "warning", "title": "stale task", "target": "T9"}
        store.audits.submit("task-hygiene", [finding], run_id="run-1")
        result = store.audits.submit("task-hygiene", [{**finding, "detail": "now 31 days"}], run_id="run-2")
        assert result.created == () and len(result.updated) == 1
        (stored,) = store.audits.list()
        assert (stored.occurrences, stored.run_id, stored.detail) == (2, "run-2", "now 31 days")
        # The same title and target under another audit type is another finding.
        store.audits.submit("security", [finding])
        assert len(store.audits.list()) == 2

    def test_a_given_fingerprint_wins_over_title_changes(self, store):
        store.audits.submit("infra", [{"severity": "info", "title": "disk 80% full", "fingerprint": "disk:/data"}])
        store.audits.submit("infra", [{"severity": "info", "title": "disk 85% full", "fingerprint": "disk:/data"}])
        (finding,) = store.audits.list()
        assert (finding.occurrences, finding.title) == (2, "disk 80% full")

    def test_severity_is_raised_never_lowered(self, store):
        store.audits.submit("code", [{"severity": "info", "title": "t"}])
        store.audits.submit("code", [{"severity": "warning", "title": "t"}])
        assert store.audits.get(1).severity == "warning"
        store.audits.submit("code", [{"severity": "info", "title": "t"}])
        assert store.audits.get(1).severity == "warning"

    def test_close_missing_resolves_what_the_run_did_not_report(self, store):
        store.audits.submit("docs", [{"severity": "info", "title": "a"}, {"severity": "info", "title": "b"}])
        store.audits.submit("security", [{"severity": "info", "title": "other type"}])
        kept = store.audits.submit("docs", [{"severity": "info", "title": "a"}])
        assert kept.resolved == () and store.audits.get(2).status == "open"  # without close_missing
        result = store.audits.submit("docs", [{"severity": "info", "title": "a"}], run_id="r3",
                                     close_missing=True, actor="auditor")
        assert [f.title for f in result.resolved] == ["b"]
        b = store.audits.get(2)
        assert (b.status, b.resolved_by) == ("resolved", "auditor") and b.resolved_at is not None
        assert "r3" in b.resolution
        assert {f.title: f.status for f in store.audits.list()} == {"a": "open", "b": "resolved", "other type": "open"}
        # An empty run with close_missing closes everything of its type.
        assert [f.title for f in store.audits.submit("docs", [], close_missing=True).resolved] == ["a"]

    def test_a_new_critical_finding_makes_one_fix_task_linked_both_ways(self, store):
        finding = {"severity": "critical", "title": "token in logs", "target": "lobwife"}
        result = store.audits.submit("security", [finding], actor="security-audit")
        (task,) = result.tasks
        (created,) = result.created
        assert (task.type, task.priority, task.status) == ("system", "high", "queued")
        assert created.fix_task_id == task.id and created.to_dict()["fix_task_id"] == task.ref
        assert f"audit-finding-{created.id}" in store.tasks.get(task.ref).tags
        assert f"Audit finding {created.id}" in task.description
        event, announced = store.events.for_task(task.ref)
        assert (event.event_type, event.actor) == ("created", "security-audit")
        assert (announced.event_type, announced.data["id"]) == ("audit_finding", created.id)  # on the feed too
        again = store.audits.submit("security", [finding])
        assert again.tasks == () and again.updated[0].fix_task_id == task.id
        assert store.tasks.count() == 1

    def test_raised_to_critical_gets_its_task_once(self, store):
        store.audits.submit("infra", [{"severity": "warning", "title": "backup failing"}])
        assert store.tasks.count() == 0
        raised = store.audits.submit("infra", [{"severity": "critical", "title": "backup failing"}])
        assert len(raised.tasks) == 1 and raised.updated[0].fix_task_ref == raised.tasks[0].ref
        store.audits.submit("infra", [{"severity": "critical", "title": "backup failing"}])
        assert store.tasks.count() == 1

    def test_a_resolved_finding_that_returns_is_a_new_finding(self, store):
        store.audits.submit("security", [{"severity": "critical", "title": "open port"}])
        store.audits.resolve(1, "closed it", actor="ops")
        result = store.audits.submit("security", [{"severity": "critical", "title": "open port"}])
        assert [f.id for f in result.created] == [2] and len(result.tasks) == 1
        assert store.tasks.count() == 2

    def test_an_ignored_finding_stays_ignored(self, store):
        store.audits.submit("docs", [{"severity": "warning", "title": "old readme"}])
        ignored = store.audits.ignore(1, "we know", actor="lead")
        assert (ignored.status, ignored.resolved_at, ignored.resolution) == ("ignored", None, "we know")
        result = store.audits.submit("docs", [{"severity": "critical", "title": "old readme"}], close_missing=True)
        assert result.created == () and result.tasks == ()
        finding = store.audits.get(1)
        assert (finding.status, finding.occurrences, finding.severity) == ("ignored", 2, "critical")

    def test_resolve_records_note_actor_and_time_and_can_reopen(self, store):
        store.audits.submit("code", [{"severity": "info", "title": "t"}])
        resolved = store.audits.update(1, status="resolved", resolution="fixed in #12", actor="lobster")
        assert store.audits.get(1) == resolved
        assert (resolved.status, resolved.resolution, resolved.resolved_by) == ("resolved", "fixed in #12", "lobster")
        assert resolved.resolved_at is not None
        reopened = store.audits.update(1, status="open")
        assert (reopened.status, reopened.resolved_at) == ("open", None)
        store.audits.resolve(1)
        store.audits.submit("code", [{"severity": "info", "title": "t"}])  # finding 2, live
        with pytest.raises(ConflictError, match="finding 2"):
            store.audits.update(1, status="open")

    @pytest.mark.parametrize(("kwargs", "error", "field"), [
        ({"status": "done"}, ValidationError, "status"),
        ({"status": "resolved", "resolution": 5}, ValidationError, "resolution"),
    ])
    def test_bad_updates_are_refused(self, store, kwargs, error, field):
        store.audits.submit("code", [{"severity": "info", "title": "t"}])
        with pytest.raises(error) as info:
            store.audits.update(1, **kwargs)
        assert info.value.field == field
        assert store.audits.get(1).status == "open"
        with pytest.raises(NotFoundError):
            store.audits.update(99, status="resolved")

    def test_list_filters(self, store):
        store.audits.submit("security", [{"severity": "critical", "title": "a"}, {"severity": "info", "title": "b"}])
        store.audits.submit("docs", [{"severity": "warning", "title": "c"}])
        store.audits.resolve(2)
        titles = lambda **kw: [f.title for f in store.audits.list(**kw)]  # noqa: E731
        assert titles() == ["a", "b", "c"]  # every status
        assert titles(audit_type="security") == ["a", "b"]
        assert titles(severity="critical") == ["a"]
        assert titles(status="resolved") == ["b"]
        assert titles(status="open", audit_type="security") == ["a"]
        assert titles(since=utcnow() - timedelta(minutes=5)) == ["a", "b", "c"]
        assert titles(until=utcnow() - timedelta(minutes=5)) == []
        assert titles(after=1, limit=1) == ["b"]
        with pytest.raises(ValidationError) as info:
            store.audits.list(severity="bad")
        assert info.value.field == "severity"

    def test_count_by_counts_matching_findings_per_value(self, store):
        store.audits.submit("security", [{"severity": "critical", "title": "a"}, {"severity": "info", "title": "b"}])
        store.audits.submit("docs", [{"severity": "warning", "title": "c"}, {"severity": "info", "title": "d"}])
        store.audits.resolve(2)
        assert store.audits.count_by("severity", status="open") == {"critical": 1, "info": 1, "warning": 1}
        assert store.audits.count_by("audit_type", status="open") == {"docs": 2, "security": 1}
        assert store.audits.count_by("status") == {"open": 3, "resolved": 1}
        assert store.audits.count_by("severity", audit_type="nothing") == {}
        with pytest.raises(ValidationError) as info:
            store.audits.count_by("title")
        assert info.value.field == "field"
        with pytest.raises(ValidationError) as info:
            store.audits.count_by("severity", status="closed")
        assert info.value.field == "status"

    @pytest.mark.parametrize(("findings", "index", "field"), [
        ([{"severity": "info", "title": "ok"}, {"severity": "fatal", "title": "x"}], 1, "severity"),
        ([{"severity": "critical", "title": "ok"}, {"severity": "info"}], 1, "title"),
        ([{"severity": "info", "title": "x", "owner": "me"}], 0, "owner"),
        ([{"severity": "critical", "title": "ok"}, "not an object"], 1, "findings"),
    ])
    def test_a_bad_finding_refuses_the_whole_run(self, store, findings, index, field):
        with pytest.raises(ValidationError) as info:
            store.audits.submit("security", findings)
        assert (info.value.field, info.value.details["index"]) == (field, index)
        assert store.audits.list() == [] and store.tasks.count() == 0

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"audit_type": "Not A Type", "findings": []}, "audit_type"),
        ({"audit_type": "docs", "findings": [], "close_missing": "yes"}, "close_missing"),
        ({"audit_type": "docs", "findings": {"title": "x"}}, "findings"),
    ])
    def test_bad_runs_are_refused(self, store, kwargs, field):
        with pytest.raises(ValidationError) as info:
            store.audits.submit(**kwargs)
        assert info.value.field == field

    def test_a_failed_fix_task_rolls_back_the_whole_run(self, store, monkeypatch):
        from lobstore.repositories import audits

        original = audits.TaskRepository.create

        def create_then_fail(self, **fields):
            original(self, **fields)
            raise RuntimeError("task creation failed")

        monkeypatch.setattr(audits.TaskRepository, "create", create_then_fail)
        with pytest.raises(RuntimeError):
            store.audits.submit("security", [{"severity": "info", "title": "a"},
                                             {"severity": "critical", "title": "b"}])
        assert store.audits.list() == [] and store.tasks.count() == 0
