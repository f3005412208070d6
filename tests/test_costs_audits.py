"""The cost and audit contracts on every backend, and the copy of their tables."""

from __future__ import annotations

from lobstore import open_store
from lobstore.maintenance.copy import copy_store

from costs_contract import OPUS, AuditsContract, CostsContract


class TestCosts(CostsContract):
    __test__ = True


class TestAudits(AuditsContract):
    __test__ = True


def test_copy_keeps_costs_prices_and_findings(sqlite_file_url, tmp_path):
    with open_store(sqlite_file_url) as store:
        store.tasks.create(name="x")
        store.costs.set_price("m", input_usd_per_mtok=1, output_usd_per_mtok=2, effective_from="2026-01-01")
        store.costs.record(task="T1", model="m", input_tokens=1_000_000, request_id="r")
        store.audits.submit("security", [{"severity": "critical", "title": "leak"}])
        prices = store.costs.prices()
    destination = f"sqlite:///{tmp_path / 'copy.db'}"
    result = copy_store(sqlite_file_url, destination)
    assert result.counts["model_prices"] == len(prices) == 4
    assert result.counts["cost_events"] == 1 and result.counts["audit_findings"] == 1
    with open_store(destination) as copy:
        assert copy.costs.prices() == prices
        assert copy.costs.record(model="m", request_id="r").duplicate  # the same event, not a new one
        assert copy.costs.for_task("T1").totals.cost_micro == 1_000_000
        assert copy.audits.get(1).fix_task_ref == "T2"
        assert copy.costs.record(model=OPUS).id == 2


def test_upgrading_adds_up_the_events_already_stored(db_url):
    """Migration 0006 back-fills the hourly rollups from events stored before it."""
    from lobstore.backends import backend_for
    from lobstore.migrations import MigrationRunner, packaged_migrations

    url = db_url
    engine = backend_for(url)
    before = [m for m in packaged_migrations(engine.engine.dialect.name) if m.version < 6]
    MigrationRunner(engine, before).apply()
    rows = [  # (created_at, model, cost_micro or NULL, input tokens)
        ("2026-02-10 09:15:00", OPUS, 1000, 10), ("2026-02-10 09:45:30", OPUS, 2000, 20),
        ("2026-02-10 10:05:00", OPUS, None, 40), ("2026-02-11 23:59:59", "other", 7, 80),
    ]
    with engine.writing() as conn:
        for created, model, cost, tokens in rows:
            conn.exec_driver_sql(
                "INSERT INTO cost_events (model, input_tokens, output_tokens, cache_read_tokens, "
                "cache_write_tokens, cost_micro, cost_source, created_at) VALUES "
                f"('{model}', {tokens}, 0, 0, 0, {'NULL' if cost is None else cost}, 'reported', '{created}')"
            )
    engine.close()
    with open_store(url) as store:
        summary = store.costs.summary(since="2026-02-10T00:00:00Z", until="2026-02-12T00:00:00Z", group_by="day")
        assert [(g.key, g.cost_micro, g.input_tokens, g.events, g.uncosted_events) for g in summary.groups] == [
            ("2026-02-10", 3000, 70, 3, 1), ("2026-02-11", 7, 80, 1, 0)]
        store.costs.record(model=OPUS, input_tokens=5, cost_usd=0.001, created_at="2026-02-10T09:50:00Z")
        by_model = store.costs.summary(since="2026-02-10T09:00:00Z", until="2026-02-10T10:00:00Z", group_by="model")
        assert [(g.key, g.cost_micro, g.events) for g in by_model.groups] == [(OPUS, 4000, 3)]
