"""Refs, timestamps, the status table and migration files: the small pieces everything uses."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from lobstore import NotFoundError
from lobstore.clock import parse_timestamp, to_iso
from lobstore.errors import MigrationError
from lobstore.ids import TaskRef, format_ref, parse_ref
from lobstore.migrations import load_migrations, packaged_migrations
from lobstore.status import STATUSES, TERMINAL, TRANSITIONS, canonical


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42, TaskRef(id=42)), ("42", TaskRef(id=42)), ("T42", TaskRef(id=42)), ("t42", TaskRef(id=42)),
     ("task-2026-02-15-a1b2", TaskRef(legacy_id="task-2026-02-15-a1b2")),
     ("2026-02-15-unity-ui", TaskRef(legacy_id="2026-02-15-unity-ui")),
     ("T4x", TaskRef(legacy_id="T4x"))],
)
def test_refs(value, expected):
    assert parse_ref(value) == expected


def test_refs_with_another_prefix():
    assert parse_ref("D7", "D") == TaskRef(id=7)
    assert parse_ref("T7", "D") == TaskRef(legacy_id="T7")
    assert format_ref(7, "D") == "D7"


@pytest.mark.parametrize("value", [0, -1, "T0", 2**63, None, "", True, 4.2])
def test_refs_that_can_name_nothing(value):
    with pytest.raises(NotFoundError):
        parse_ref(value)


@pytest.mark.parametrize(
    "value",
    ["2026-02-13T10:00:00Z", "2026-02-13T10:00:00+00:00", "2026-02-13T11:00:00+01:00",
     "2026-02-13T10:00:00.123456Z", datetime(2026, 2, 13, 10, 0, tzinfo=timezone.utc),
     datetime(2026, 2, 13, 5, 0, tzinfo=timezone(timedelta(hours=-5))), datetime(2026, 2, 13, 10, 0)],
)
def test_every_timestamp_form_comes_out_the_same(value):
    assert to_iso(parse_timestamp(value)) == "2026-02-13T10:00:00Z"


def test_dates_are_midnight_utc():
    assert to_iso(parse_timestamp(date(2026, 2, 13))) == "2026-02-13T00:00:00Z"
    assert to_iso(parse_timestamp("2026-02-13")) == "2026-02-13T00:00:00Z"


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", 1700000000, None])
def test_bad_timestamps(value):
    with pytest.raises(ValueError):
        parse_timestamp(value)


def test_status_table_is_the_designs():
    assert set(STATUSES) == {"queued", "active", "blocked", "completed", "failed", "cancelled"}
    assert TRANSITIONS["completed"] == frozenset()
    assert TRANSITIONS["cancelled"] == frozenset({"queued"})
    # Moves lobmob's own code makes (a lobster completing a task never set active, or one the
    # task manager failed as an orphan while kubectl was down).
    assert TRANSITIONS["failed"] == frozenset({"queued", "completed"})
    assert "completed" in TRANSITIONS["queued"]
    assert TERMINAL == {"completed", "failed", "cancelled"}
    assert canonical("system-active") == "active" and canonical("Active") == "active"


def test_both_dialects_ship_the_same_versions():
    sqlite = [m.label for m in packaged_migrations("sqlite")]
    postgresql = [m.label for m in packaged_migrations("postgresql")]
    assert sqlite and sqlite == postgresql


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "expected version 0002"),
        (["0001_a.sql", "0001_b.sql"], "expected version 0002"),
        (["0002_b.sql"], "expected version 0001"),
        (["0001_a.sql", "2_b.sql"], "misnamed"),
        (["0001_Bad-Name.sql"], "misnamed"),
    ],
)
def test_migration_folders_are_checked_strictly(tmp_path, names, message):
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_migration_files_in_order(tmp_path):
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "README.txt").write_text("not a migration")
    assert [m.label for m in load_migrations(tmp_path)] == ["0001_first", "0002_second"]
