"""`lobstore costs` as a person uses it."""

from __future__ import annotations

import json

import pytest

from lobstore import open_store
from lobstore.cli import main


@pytest.fixture
def db(sqlite_file_url, monkeypatch):
    monkeypatch.delenv("LOBSTORE_URL", raising=False)
    with open_store(sqlite_file_url) as store:
        store.tasks.create(name="x")
        store.costs.record_many([
            {"task_id": "T1", "model": "claude-opus-4-6", "agent": "lobster-swe-t1",
             "input_tokens": 120_000, "output_tokens": 3_000},
            {"model": "claude-haiku-4-5", "agent": "lobboss", "input_tokens": 5_000, "output_tokens": 50},
            {"model": "gpt-9", "input_tokens": 5},
        ])
    return sqlite_file_url


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_summary_by_model_is_the_default(db, capsys):
    code, out, _ = run(capsys, "--db", db, "costs")
    title, blank, header, *rows = out.splitlines()
    assert code == 0 and title.startswith("$0.6792 in 3 events, ")
    assert header.split()[:3] == ["MODEL", "COST", "EVENTS"]
    assert [row.split()[:2] for row in rows] == [
        ["claude-opus-4-6", "$0.6750"], ["claude-haiku-4-5", "$0.0042"], ["gpt-9", "$0.0000"]]
    assert rows[-1].split()[-1] == "1"  # the uncosted event is shown as such


def test_period_group_by_and_json(db, capsys):
    _, out, _ = run(capsys, "--db", db, "costs", "--period", "week", "--group-by", "agent", "--json")
    data = json.loads(out)
    assert data["group_by"] == "agent" and data["events"] == 3
    assert [g["key"] for g in data["groups"]] == ["lobster-swe-t1", "lobboss", None]
    _, out, _ = run(capsys, "--db", db, "costs", "--group-by", "task_type")
    assert out.splitlines()[2].split()[0] == "TASK"


def test_one_task(db, capsys):
    _, out, _ = run(capsys, "--db", db, "costs", "--task", "t1")
    assert out.splitlines()[0] == "T1: $0.6750 in 1 event"
    code, _, err = run(capsys, "--db", db, "costs", "--task", "T9")
    assert code == 1 and "no task T9" in err


def test_prices_set_and_refused(db, capsys):
    _, out, _ = run(capsys, "--db", db, "costs", "prices")
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["claude-haiku-4-5", "$0.80", "$4.00"], ["claude-opus-4-6", "$5.00", "$25.00"],
        ["claude-sonnet-4-5", "$3.00", "$15.00"]]
    code, _, err = run(capsys, "--db", db, "costs", "set-price", "claude-opus-4-6", "--input", "0.000005",
                       "--output", "25")
    assert code == 1 and "per MILLION" in err
    code, out, _ = run(capsys, "--db", db, "costs", "set-price", "claude-opus-4-6", "--input", "6",
                       "--output", "30", "--from", "2026-03-01")
    assert code == 0 and "from 2026-03-01T00:00:00Z" in out
    _, out, _ = run(capsys, "--db", db, "costs", "prices", "--all", "--json")
    opus = [p for p in json.loads(out) if p["model"] == "claude-opus-4-6"]
    assert [(p["input_usd_per_mtok"], p["cache_write_usd_per_mtok"]) for p in opus] == [(5, 6.25), (6, 7.5)]


def test_bad_options_are_errors_not_tracebacks(db, capsys):
    code, _, err = run(capsys, "--db", db, "costs", "--period", "week", "--since", "2026-01-01")
    assert code == 1 and "period or since" in err


def test_budgets_set_list_alerts_and_remove(db, capsys):
    code, out, _ = run(capsys, "--db", db, "costs", "budgets", "set", "--scope", "task", "--target", "T1",
                       "--period", "total", "--limit", "0.5", "--hard")
    assert code == 0 and out.startswith("budget 1 set:")
    assert out.splitlines()[-1].split() == ["1", "task", "T1", "total", "$0.5000", "$0.6750", "hard", "exhausted"]
    code, out, _ = run(capsys, "--db", db, "costs", "budgets", "alerts", "--json")
    assert [a["threshold"] for a in json.loads(out)] == [80, 100]  # made over its limit: both at once
    code, out, err = run(capsys, "--db", db, "costs", "budgets", "set", "--scope", "fleet", "--period", "day",
                         "--limit", "nothing")
    assert code != 0 and "limit_usd" in err and "Traceback" not in err
    assert run(capsys, "--db", db, "costs", "budgets", "remove", "1")[0] == 0
    code, out, _ = run(capsys, "--db", db, "costs", "budgets")
    assert out.strip() == "no budgets"


def test_reprice_shows_old_and_new_per_day_and_a_dry_run_writes_nothing(db, capsys):
    with open_store(db) as store:
        store.costs.set_price("gpt-9", input_usd_per_mtok=2, output_usd_per_mtok=2, effective_from="2020-01-01")
    code, out, _ = run(capsys, "--db", db, "costs", "reprice", "--model", "gpt-9", "--since", "2020-01-01",
                       "--dry-run")
    header, row, blank, summary = out.splitlines()
    assert code == 0 and header.split() == ["DAY", "MODEL", "EVENTS", "CHANGED", "OLD", "NEW", "DELTA"]
    assert row.split()[1:] == ["gpt-9", "1", "1", "$0.0000", "$0.0000", "+$0.0000"]  # 5 tokens at $2/M: 10 micro-dollars, shown 0
    assert summary.startswith("dry run, nothing written: would change 1 of 1 event")
    with open_store(db) as store:
        assert store.costs.summary(period="month").totals.uncosted_events == 1
    code, out, _ = run(capsys, "--db", db, "costs", "reprice", "--model", "gpt-9", "--since", "2020-01-01", "--json")
    assert code == 0 and json.loads(out)["changed_events"] == 1 and json.loads(out)["new_cost_usd"] == 0.00001
    with open_store(db) as store:
        assert store.costs.summary(period="month").totals.uncosted_events == 0
        assert [r.actor for r in store.costs.reprice_runs()] == ["cli"]
