"""The cost and audit contracts on every backend, and the copy of their tables."""

from __future__ import annotations

import pytest

from lobstore import open_store
from lobstore.copy import copy_store

from costs_contract import OPUS, AuditsContract, CostsContract


class Backends:
    """SQLite in memory, SQLite in a file, PostgreSQL (skipped without a server)."""

    @pytest.fixture(params=["sqlite-memory", "sqlite-file", "postgresql"])
    def store(self, request):
        if request.param == "sqlite-memory":
            url = "sqlite://"
        elif request.param == "sqlite-file":
            url = request.getfixturevalue("sqlite_file_url")
        else:
            url = request.getfixturevalue("postgres_url")
        with open_store(url) as store:
            yield store


class TestCosts(Backends, CostsContract):
    __test__ = True


class TestAudits(Backends, AuditsContract):
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
