"""Retention: pruning raw cost events keeps every summary, loses nothing written meanwhile."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from lobstore import ValidationError, open_store
from lobstore.clock import utcnow
from lobstore.maintenance.prune import parse_age, prune
from lobstore.repositories.costs.common import floor_hour
from store_contract import in_threads

MODELS = ("claude-opus-4-6", "claude-haiku-4-5", "no-price-model")
AGENTS = ("lobster-a", "lobster-b", None)
DAYS = 40


def first_day():
    return (utcnow() - timedelta(days=200)).replace(hour=0, minute=0, second=0)


def fill(store):
    """40 days of events from 200 days ago (the first 20 older than 180 days): three models
    (one without a price), tasks of two types and none, agents and none, reported costs."""
    for n, kind in enumerate(("swe", "qa", "swe")):
        store.tasks.create(name=f"t{n}", type=kind)
    start, events = first_day(), []
    for i in range(DAYS * 6):
        events.append({
            "model": MODELS[i % 3], "agent": AGENTS[i % 4 % 3], "task_id": [1, 2, 3, None][i % 4],
            "input_tokens": 1000 + 37 * i, "output_tokens": 17 * i, "cache_read_tokens": i,
            "created_at": start + timedelta(hours=4 * i, minutes=i % 60, seconds=i % 7),
            **({"cost_usd": f"0.{i:06d}"} if i % 5 == 0 else {}),
        })
    store.costs.record_many(events)
    return start


def every_summary(store, start):
    """Every summary a person could ask for, per day and over the whole range."""
    out = {}
    end = start + timedelta(days=DAYS)
    ranges = [(start + timedelta(days=d), start + timedelta(days=d + 1)) for d in range(DAYS)] + [(start, end)]
    for since, until in ranges:
        for group_by in (None, "model", "task", "agent", "task_type", "day"):
            out[since, until, group_by] = store.costs.summary(since=since, until=until, group_by=group_by).to_dict()
        for model in MODELS:
            out[since, until, model] = store.costs.summary(since=since, until=until, model=model).to_dict()
        for task in ("T1", "T2", "T3"):
            out[since, until, task] = store.costs.summary(since=since, until=until, task=task,
                                                          group_by="model").to_dict()
        out[since, until, "agent"] = store.costs.summary(since=since, until=until, agent="lobster-a").to_dict()
    for task in ("T1", "T2", "T3"):
        out[task] = store.costs.for_task(task).to_dict()
    out["by task"] = store.costs.cost_by_task([1, 2, 3])
    out["daily"] = [(day, models) for day, models in store.costs.daily_by_model(since=start, until=end)]
    for value in out.values():
        if isinstance(value, dict):
            value.pop("pruned_before", None)
    return out


def test_parse_age():
    assert parse_age("180d", "x") == timedelta(days=180) and parse_age("36h", "x") == timedelta(hours=36)
    for bad in ("180", "0d", "1y", "-3d", ""):
        with pytest.raises(ValidationError):
            parse_age(bad, "costs-older-than")


def test_prune_keeps_every_summary_identical(store):
    start = fill(store)
    before = every_summary(store, start)
    # Prune keeps whole hours: its cutoff is the hour 180 days ago began (an event minutes
    # before "180 days ago" but after that hour's start is kept).
    old = store.costs.count_prunable(floor_hour(utcnow() - timedelta(days=180)))
    assert 100 < old < DAYS * 6

    dry = prune(store, costs_older_than=timedelta(days=180), dry_run=True)
    assert dry.cost_events >= old and store.costs.count_prunable(dry.costs_before) == dry.cost_events
    assert store.costs.pruned_before() is None

    report = prune(store, costs_older_than=timedelta(days=180), actor="test")
    assert report.cost_events == dry.cost_events and report.batches >= 1
    assert store.costs.count_prunable(report.costs_before) == 0
    assert len(store.costs.list(limit=1000)) == DAYS * 6 - report.cost_events
    assert every_summary(store, start) == before
    summary = store.costs.summary(since=start, until=start + timedelta(days=DAYS))
    assert summary.pruned_before == report.costs_before
    assert summary.to_dict()["pruned_before"] is not None
    assert store.costs.summary(period="day").pruned_before is None  # a range after the horizon

    again = prune(store, costs_older_than=timedelta(days=180))
    assert again.cost_events == 0 and every_summary(store, start) == before


def test_prune_while_writers_write_loses_nothing(db_url):
    with open_store(db_url) as store:
        fill(store)
        pruned = store.costs.count_prunable(floor_hour(utcnow() - timedelta(days=180)))  # whole hours, as prune
    written: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with open_store(db_url, migrate=False) as mine:
                i = 0
                while not stop.is_set() or i < 20:
                    request_id = f"w{n}-{i}"
                    mine.costs.record(model=MODELS[0], input_tokens=10, request_id=request_id,
                                      created_at=utcnow() - timedelta(days=(i % 3) * 100))  # old and new
                    written.append(request_id)
                    i += 1
                    # A pause, as a fleet's writers have: three stores writing back to back with
                    # no gap leave SQLite's busy handler (another store's BEGIN waits by sleeping)
                    # no opening, and the prune starves for minutes.
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    with open_store(db_url, migrate=False) as store:
        report = prune(store, costs_older_than=timedelta(days=180))
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert report.cost_events >= pruned
    with open_store(db_url, migrate=False) as store:
        kept, after = set(), 0
        while page := store.costs.list(after=after, limit=1000):
            kept |= {e.request_id for e in page if e.request_id}
            after = page[-1].id
        pruned_by_writers = report.cost_events - pruned
        # Every event a writer wrote is either still there or was pruned into the archive: the
        # sums over all time count each exactly once.
        assert len(kept) + pruned_by_writers == len(written)
        whole = store.costs.summary(since=first_day() - timedelta(days=1), until=utcnow() + timedelta(hours=2))
        assert whole.totals.events == DAYS * 6 + len(written)


def test_a_jobs_file_job_runs_the_prune(tmp_path):
    """Retention on a schedule: a job of the jobs file whose command is ``lobstore prune``."""
    pytest.importorskip("croniter")
    from lobstore.cron import JobScheduler, parse_jobs
    from lobstore_server import LOBSTORE

    url = f"sqlite:///{tmp_path / 'x.db'}"
    with open_store(url) as store:
        start = fill(store)
        before = every_summary(store, start)
        command = [str(LOBSTORE), "--db", url, "prune", "--costs-older-than", "180d",
                   "--token-audit-older-than", "365d"]
        jobs = parse_jobs({"jobs": {"prune": {"command": command, "schedule": "17 3 * * *", "timeout": 60}}})
        now = [datetime(2026, 3, 1, 3, 16, 30, tzinfo=timezone.utc)]
        scheduler = JobScheduler(store, jobs, stop_grace=5, now=lambda: now[0])
        scheduler.on_start()
        try:
            scheduler.run_now()
            now[0] = now[0].replace(minute=17, second=0)  # its slot: 03:17 UTC
            scheduler.run_now()
            assert scheduler.wait_idle(60)
        finally:
            scheduler.stop(timeout=5)
        job = store.jobs.get("prune")
        assert job.last_status == "success", job.last_output
        assert "cost events before" in job.last_output and "longest write-lock hold" in job.last_output
        assert store.costs.pruned_before() is not None
        assert every_summary(store, start) == before


def test_the_prune_command_dry_run_and_bad_age(sqlite_file_url, capsys, monkeypatch):
    from lobstore.cli import main

    monkeypatch.delenv("LOBSTORE_URL", raising=False)
    with open_store(sqlite_file_url) as store:
        fill(store)
        old = store.costs.count_prunable(floor_hour(utcnow() - timedelta(days=180)))
    assert main(["--db", sqlite_file_url, "prune", "--costs-older-than", "180d", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"would prune {old} cost events before ")
    with open_store(sqlite_file_url) as store:
        assert store.costs.count_prunable(floor_hour(utcnow() - timedelta(days=180))) == old  # nothing deleted
    assert main(["--db", sqlite_file_url, "prune", "--costs-older-than", "half a year"]) != 0
    assert "180d" in capsys.readouterr().err


def test_two_prunes_at_once_archive_each_event_once(db_url):
    """A `lobstore prune` run by hand while the scheduled one runs: every summary stays exact."""
    with open_store(db_url) as store:
        start = fill(store)
        before = every_summary(store, start)
    horizon = floor_hour(utcnow() - timedelta(days=180))
    barrier, counts = threading.Barrier(2), []

    def run(_):
        with open_store(db_url, migrate=False) as own:
            barrier.wait()
            counts.append(own.costs.prune_events(horizon).events)

    assert in_threads(2, run) == []
    with open_store(db_url, migrate=False) as store:
        assert store.costs.count_prunable(horizon) == 0
        assert sum(counts) == DAYS * 6 - len(store.costs.list(limit=1000))
        assert every_summary(store, start) == before
