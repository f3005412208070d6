"""`lobstore backup` and `lobstore restore`: consistent while writers write, never half-written,
verified on restore; scheduled backups keep the right files."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from lobstore import ConflictError, SchemaVersionError, open_store
from lobstore.backends import backend_for
from lobstore.cli import main
from lobstore.errors import ConfigurationError
from lobstore.maintenance import pgtools
from lobstore.maintenance.archive import BackupFileError, read_manifest
from lobstore.maintenance.backup import backup, backup_name
from lobstore.maintenance.checksum import data_tables
from lobstore.maintenance.restore import restore
from lobstore.maintenance.scheduled import BackupService, backups_in, prune, to_keep
from lobstore.migrations import MigrationRunner, packaged_migrations
from lobstore.schema import cost_rollups

from lobstore_server import LOBSTORE

WRITERS = 8
HAS_PG_DUMP = pgtools.tool("pg_dump") is not None and pgtools.tool("pg_restore") is not None


# -- the database as rows ----------------------------------------------------------------------------
def rows_of(url: str) -> dict[str, list[dict]]:
    """Every row of every data table, typed by schema.py, in primary-key order."""
    backend = backend_for(url, read_only=True)
    try:
        with backend.snapshot() as conn:
            return {
                table.name: [dict(row) for row in conn.execute(
                    sa.select(table).order_by(*table.primary_key.columns)).mappings()]
                for table in data_tables()
            }
    finally:
        backend.close()


# -- a write storm ------------------------------------------------------------------------------------
class WriteStorm:
    """8 writers; each transaction k of writer w creates task ``w{w}-{k}`` with a note and a cost
    event, and bumps the writer's own counter task. What each committed transaction left on
    the counter task is remembered, so the state as of any point can be rebuilt."""

    def __init__(self, store) -> None:
        self.store = store
        self.counters = {}
        with store.transaction() as tx:
            tx.tasks.create(name="seed", repos=["acme/web"])
            for w in range(WRITERS):
                self.counters[w] = tx.tasks.create(name=f"counter-{w}").id
        self.committed: dict[int, dict[int, dict]] = defaultdict(dict)  # writer -> k -> counter row
        self.commit_times: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(w,)) for w in range(WRITERS)]

    def _write(self, w: int) -> None:
        k = 0
        try:
            while not self._stop.is_set():
                k += 1
                with self.store.transaction() as tx:
                    task = tx.tasks.create(name=f"w{w}-{k}", repos=["acme/web"], tags=[f"w{w}"])
                    tx.events.add(task.id, "note", data={"w": w, "k": k})
                    tx.costs.record(task_id=task.id, model="claude-opus-4-6", input_tokens=100 + k,
                                    output_tokens=k, request_id=f"w{w}-{k}")
                    tx.tasks.update(self.counters[w], description=f"step {k}", actor=f"writer-{w}")
                    counter = tx.tasks.get(self.counters[w])
                self.committed[w][k] = counter.to_dict()
                self.commit_times.append(time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def __enter__(self) -> WriteStorm:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for(self, commits: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.commit_times) < commits and time.monotonic() < deadline and not self.errors:
            time.sleep(0.01)


def expected_as_of(source_rows: dict[str, list[dict]], storm: WriteStorm, point: dict[int, int]) -> dict:
    """The source as it was when writer w had committed exactly point[w] transactions."""
    counter_ids = {storm.counters[w]: w for w in storm.counters}
    task_k: dict[int, tuple[int, int]] = {}  # task id -> (writer, transaction)
    for row in source_rows["tasks"]:
        if row["name"].startswith("w") and "-" in row["name"]:
            w, k = row["name"][1:].split("-")
            task_k[row["id"]] = (int(w), int(k))

    def kept(w: int, k: int) -> bool:
        return k <= point[w]

    expected: dict[str, list[dict]] = {}
    expected_tasks = []
    for row in source_rows["tasks"]:
        if row["id"] in task_k:
            if kept(*task_k[row["id"]]):
                expected_tasks.append(row)
        elif row["id"] in counter_ids:
            w = counter_ids[row["id"]]
            if point[w]:  # the counter as that writer's transaction point[w] left it
                state = storm.committed[w][point[w]]
                assert state["version"] == point[w] + 1
                expected_tasks.append({**row, "description": state["description"], "version": state["version"],
                                       "updated_at": datetime.fromisoformat(state["updated_at"].replace("Z", "+00:00"))})
            else:
                expected_tasks.append({**row, "description": None, "version": 1, "updated_at": row["created_at"]})
        else:
            expected_tasks.append(row)
    expected["tasks"] = expected_tasks

    def event_kept(row: dict) -> bool:
        if row["task_id"] in task_k:
            return kept(*task_k[row["task_id"]])
        if row["task_id"] in counter_ids and row["event_type"] == "updated":
            return kept(counter_ids[row["task_id"]], row["data"]["version"] - 1)
        return True

    expected["task_events"] = [r for r in source_rows["task_events"] if event_kept(r)]
    expected["cost_events"] = [r for r in source_rows["cost_events"]
                               if r["task_id"] not in task_k or kept(*task_k[r["task_id"]])]
    for name in source_rows:
        expected.setdefault(name, source_rows[name])
    expected.pop(cost_rollups.name)  # sums that later writes changed: checked against the events
    return expected


def check_restored_as_of_the_backup(restored: dict, source: dict, storm: WriteStorm) -> dict[int, int]:
    point = {w: 0 for w in range(WRITERS)}
    for row in restored["tasks"]:
        if row["name"].startswith("w") and "-" in row["name"]:
            w, k = map(int, row["name"][1:].split("-"))
            point[w] = max(point[w], k)
    expected = expected_as_of(source, storm, point)
    for name, rows in expected.items():
        assert restored[name] == rows, f"{name} differs from the source as of the backup"
    # Each hour's rollup is the sum of the restored cost events of that hour.
    sums: dict = defaultdict(lambda: [0, 0, 0])
    for event in restored["cost_events"]:
        hour = event["created_at"].replace(minute=0, second=0, microsecond=0)
        totals = sums[hour, event["model"]]
        totals[0] += 1
        totals[1] += event["input_tokens"]
        totals[2] += event["cost_micro"] or 0
    assert {(r["hour"], r["model"]): [r["events"], r["input_tokens"], r["cost_micro"]]
            for r in restored["cost_rollups"]} == {key: value for key, value in sums.items()}
    return point


def storm_then_backup(url: str, dest: Path, **options) -> tuple[WriteStorm, dict, dict]:
    with open_store(url) as store:
        storm = WriteStorm(store)
        with storm:
            storm.wait_for(200)
            began = time.monotonic()
            result = backup(url, dest, **options)
            ended = time.monotonic()
            during = sum(began <= t <= ended for t in storm.commit_times)
            storm.wait_for(len(storm.commit_times) + 100)  # writers carry on after the point
        assert storm.errors == []
    assert during > 0, "no writer committed while the backup ran: the test proves nothing"
    return storm, result.manifest, rows_of(url)


# -- SQLite ---------------------------------------------------------------------------------------------
def test_sqlite_backup_during_a_write_storm_restores_the_source_as_of_one_moment(tmp_path):
    source = f"sqlite:///{tmp_path / 'live.db'}"
    storm, manifest, final = storm_then_backup(source, tmp_path / "backup.tar.gz")
    assert manifest["method"] == "sqlite-online-backup"

    restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
    result = restore(tmp_path / "backup.tar.gz", restored_url)
    assert result.checked == "the backup's checksums"
    restored = rows_of(restored_url)
    point = check_restored_as_of_the_backup(restored, final, storm)
    assert 0 < sum(point.values()) < len(storm.commit_times)  # a point in the middle of the storm
    assert {name: len(rows) for name, rows in restored.items()} == {
        name: table["rows"] for name, table in manifest["tables"].items()}
    with open_store(restored_url) as store:  # a working store: the next task gets the next id
        assert store.tasks.create(name="after restore").id == max(r["id"] for r in restored["tasks"]) + 1


def test_restore_of_a_sqlite_backup_into_postgresql_matches_every_row(tmp_path, postgres_url):
    source = f"sqlite:///{tmp_path / 'live.db'}"
    storm, _, final = storm_then_backup(source, tmp_path / "backup.tar.gz")
    restore(tmp_path / "backup.tar.gz", postgres_url)
    check_restored_as_of_the_backup(rows_of(postgres_url), final, storm)


# -- PostgreSQL ------------------------------------------------------------------------------------------
@pytest.fixture
def new_databases(postgres_url):
    """Make new, empty PostgreSQL databases on the test server (a pg_dump backup restores into
    a new database); all are dropped afterwards. ``new_database()`` is a plain URL (schema
    public); ``new_database(like=url)`` keeps the options (search_path) of ``url``."""
    server = sa.engine.make_url(postgres_url.split("?")[0])
    admin = sa.create_engine(server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    made = []

    def new_database(like: str | None = None) -> str:
        name = f"{server.database}_bk_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        plain = f"{postgres_url.split('?')[0].rsplit('/', 1)[0]}/{name}"
        return plain if like is None else like.replace(f"/{server.database}?", f"/{name}?", 1)

    yield new_database
    with admin.connect() as conn:
        for name in made:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def scratch_database(postgres_url, new_databases):
    """A new database whose URL works in the same schema as ``postgres_url``."""
    return new_databases(like=postgres_url)


@pytest.mark.skipif(not HAS_PG_DUMP, reason="pg_dump and pg_restore are not installed")
def test_postgresql_pg_dump_during_a_write_storm_restores_the_source_as_of_one_moment(
        tmp_path, postgres_url, scratch_database):
    storm, manifest, final = storm_then_backup(postgres_url, tmp_path / "pg.tar.gz")
    assert manifest["method"] == "pg_dump" and manifest["payload"]["kind"] == "pg_dump"
    result = restore(tmp_path / "pg.tar.gz", scratch_database)
    assert result.checked == "the backup's checksums"
    restored = rows_of(scratch_database)
    check_restored_as_of_the_backup(restored, final, storm)
    with open_store(scratch_database) as store:  # sequences came along
        assert store.tasks.create(name="after restore").id > max(r["id"] for r in restored["tasks"])


def test_postgresql_logical_backup_during_a_write_storm_restores_into_sqlite(tmp_path, postgres_url):
    storm, manifest, final = storm_then_backup(postgres_url, tmp_path / "pg.tar.gz", method="sqlite")
    assert manifest["method"] == "logical-copy" and manifest["payload"]["kind"] == "sqlite"
    restored_url = f"sqlite:///{tmp_path / 'from-pg.db'}"
    restore(tmp_path / "pg.tar.gz", restored_url)
    check_restored_as_of_the_backup(rows_of(restored_url), final, storm)


@pytest.mark.skipif(not HAS_PG_DUMP, reason="pg_dump and pg_restore are not installed")
def test_a_pg_dump_backup_refuses_sqlite_and_a_database_with_tables(tmp_path, postgres_url, scratch_database):
    with open_store(postgres_url) as store:
        store.tasks.create(name="one")
    backup(postgres_url, tmp_path / "pg.tar.gz", method="pg_dump")
    with pytest.raises(ConfigurationError, match="restores into PostgreSQL only"):
        restore(tmp_path / "pg.tar.gz", f"sqlite:///{tmp_path / 'x.db'}")
    assert not (tmp_path / "x.db").exists()
    engine = sa.create_engine(scratch_database.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{manifest_schema(tmp_path / "pg.tar.gz")}"')
    engine.dispose()
    open_store(scratch_database).close()  # lobstore's tables, empty
    with pytest.raises(ConflictError, match="new database only"):
        restore(tmp_path / "pg.tar.gz", scratch_database)


def manifest_schema(path: Path) -> str:
    return read_manifest(path)["postgresql"]["schema"]


@pytest.mark.skipif(not HAS_PG_DUMP, reason="pg_dump and pg_restore are not installed")
def test_pg_dump_from_a_plain_url_to_a_new_database_in_public(tmp_path, new_databases, capsys):
    """The common deployment: lobstore's tables in the public schema, URLs without options."""
    source, target = new_databases(), new_databases()
    with open_store(source) as store:
        store.tasks.create(name="in public", repos=["acme/web"])
        store.costs.record(task_id="T1", model="claude-opus-4-6", input_tokens=10, output_tokens=2)
    assert main(["--db", source, "backup", str(tmp_path / "public.tar.gz"), "--method", "pg_dump"]) == 0
    assert read_manifest(tmp_path / "public.tar.gz")["postgresql"]["schema"] == "public"
    assert main(["restore", str(tmp_path / "public.tar.gz"), target]) == 0
    assert "checked against the backup's checksums" in capsys.readouterr().out
    assert rows_of(target) == rows_of(source)


# -- never half-written -----------------------------------------------------------------------------------
def big_database(path: Path) -> str:
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        with store.transaction() as tx:
            for n in range(1500):
                tx.tasks.create(name=f"task {n}", description=os.urandom(12_000).hex())  # ~36 MB
    return url


def test_a_killed_backup_leaves_no_file_at_its_name(tmp_path):
    url = big_database(tmp_path / "big.db")
    dest = tmp_path / "backups" / "nightly.tar.gz"
    dest.parent.mkdir()
    proc = subprocess.Popen([str(LOBSTORE), "--db", url, "backup", str(dest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the first step of pages is copied: the backup is under way
        if line.startswith("copying pages"):
            break
    assert proc.poll() is None, "the backup ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not dest.exists()
    assert all(p.name.startswith(".nightly.tar.gz.partial-") for p in dest.parent.iterdir())

    assert main(["--db", url, "backup", str(dest)]) == 0  # the name is free; the next run succeeds
    assert read_manifest(dest)["tables"]["tasks"]["rows"] == 1500


def test_a_backup_never_replaces_a_file(tmp_path, sqlite_file_url, capsys):
    open_store(sqlite_file_url).close()
    dest = tmp_path / "keep.tar.gz"
    dest.write_bytes(b"precious")
    assert main(["--db", sqlite_file_url, "backup", str(dest)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert dest.read_bytes() == b"precious"


def test_backup_of_a_missing_database_creates_nothing(tmp_path, capsys):
    assert main(["--db", f"sqlite:///{tmp_path / 'typo.db'}", "backup", str(tmp_path)]) == 1
    assert "no SQLite database at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# -- restore checks ------------------------------------------------------------------------------------
@pytest.fixture
def small_backup(tmp_path, sqlite_file_url) -> Path:
    with open_store(sqlite_file_url) as store:
        for n in range(30):
            store.tasks.create(name=f"task {n}")
        store.costs.record(task_id="T1", model="claude-opus-4-6", input_tokens=10, output_tokens=5)
    return backup(sqlite_file_url, tmp_path / "small.tar.gz").path


def test_the_cli_restores_and_prints_the_checked_tables(small_backup, tmp_path, capsys):
    target = tmp_path / "restored.db"
    assert main(["restore", str(small_backup), f"sqlite:///{target}"]) == 0
    out = capsys.readouterr().out
    assert "every table checked against the backup's checksums" in out
    assert any(line.split() == ["tasks", "30"] for line in out.splitlines())
    with open_store(f"sqlite:///{target}") as store:
        assert store.tasks.count() == 30 and store.costs.for_task("T1").totals.events == 1


def test_restore_refuses_a_database_that_holds_data_and_changes_nothing(small_backup, tmp_path):
    target = f"sqlite:///{tmp_path / 'busy.db'}"
    with open_store(target) as store:
        store.tasks.create(name="mine")
    with pytest.raises(ConflictError, match="already holds data"):
        restore(small_backup, target)
    with open_store(target) as store:
        assert [t.name for t in store.tasks.list()] == ["mine"]


def test_restore_into_an_existing_empty_sqlite_file_copies_and_checks(small_backup, tmp_path):
    target = f"sqlite:///{tmp_path / 'empty.db'}"
    open_store(target).close()
    result = restore(small_backup, target)
    assert result.counts["tasks"] == 30 and result.checked == "the backup's checksums"


def test_a_damaged_backup_is_refused_before_anything_is_written(small_backup, tmp_path):
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(small_backup) as tar:  # same manifest, one byte of the payload changed
        manifest = tar.extractfile("manifest.json").read()
        payload = bytearray(tar.extractfile("lobstore.sqlite").read())
    payload[len(payload) // 2] ^= 0xFF
    with tarfile.open(damaged, "w:gz") as tar:
        for name, data in (("manifest.json", manifest), ("lobstore.sqlite", bytes(payload))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BackupFileError, match="damaged"):
        restore(damaged, f"sqlite:///{tmp_path / 'restored.db'}")
    assert not (tmp_path / "restored.db").exists()

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(small_backup.read_bytes()[: small_backup.stat().st_size // 2])
    with pytest.raises(BackupFileError):
        restore(truncated, f"sqlite:///{tmp_path / 'restored.db'}")
    assert not (tmp_path / "restored.db").exists()


def test_a_file_that_is_not_a_backup_is_named_as_such(tmp_path, sqlite_file_url, capsys):
    open_store(sqlite_file_url).close()
    assert main(["restore", sqlite_file_url.removeprefix("sqlite:///"), f"sqlite:///{tmp_path / 'x.db'}"]) == 1
    assert "not a readable lobstore backup" in capsys.readouterr().err


def test_a_backup_of_an_older_schema_is_migrated_on_restore(tmp_path):
    """The upgrade path: back up (still at the old schema), upgrade, restore the backup."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    backend = backend_for(url)
    MigrationRunner(backend, packaged_migrations("sqlite")[:3]).apply()
    with backend.writing() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tasks (name, type, status, priority, created_at, updated_at) "
            "VALUES ('from the old days', 'swe', 'queued', 'normal', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    backend.close()
    made = backup(url, tmp_path / "old.tar.gz")
    assert made.manifest["schema_version"] == 3 and made.manifest["checksum"] is None  # counts only
    assert made.manifest["tables"]["tasks"] == {"rows": 1, "sha256": None}

    for target in (f"sqlite:///{tmp_path / 'new.db'}", f"sqlite:///{tmp_path / 'existing.db'}"):
        if "existing" in target:
            open_store(target).close()
        result = restore(made.path, target)
        assert result.migrated_from == 3 and "migrated from schema version 3" in result.checked
        with open_store(target, read_only=True) as store:
            assert store.tasks.get("T1").name == "from the old days"


def test_a_backup_newer_than_this_lobstore_is_refused(small_backup, tmp_path, monkeypatch):
    newer = tmp_path / "newer.tar.gz"
    manifest = read_manifest(small_backup)
    manifest["schema_version"] = 999
    with tarfile.open(small_backup) as src, tarfile.open(newer, "w:gz") as dst:
        for member in src:
            data = json.dumps(manifest).encode() if member.name == "manifest.json" else src.extractfile(member).read()
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(SchemaVersionError, match="newer than this lobstore"):
        restore(newer, f"sqlite:///{tmp_path / 'r.db'}")
    assert not (tmp_path / "r.db").exists()


# -- retention and the scheduled service ---------------------------------------------------------------
def test_retention_keeps_the_newest_of_each_recent_day_and_week():
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)  # a Thursday
    taken = [start + timedelta(hours=6 * n) for n in range(4 * 60)]  # every 6 hours for 60 days
    newest = taken[-1]  # 2026-03-01 18:00, a Sunday
    kept = to_keep(taken, keep_daily=7, keep_weekly=4)
    daily = {datetime(2026, 3, d, 18, tzinfo=timezone.utc) for d in (1,)} | {
        datetime(2026, 2, d, 18, tzinfo=timezone.utc) for d in (23, 24, 25, 26, 27, 28)}
    # ISO weeks end on Sunday: the newest of the weeks ending 1 Mar, 22 Feb, 15 Feb and 8 Feb.
    weekly = {newest} | {datetime(2026, 2, d, 18, tzinfo=timezone.utc) for d in (22, 15, 8)}
    assert kept == daily | weekly
    assert len(kept) == 10
    assert to_keep(taken[:1], keep_daily=1, keep_weekly=0) == {taken[0]}


def test_prune_deletes_only_old_backups_and_stale_scratch(tmp_path):
    start = datetime(2026, 2, 1, 3, tzinfo=timezone.utc)
    for n in range(20):
        (tmp_path / backup_name(start + timedelta(days=n))).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "lobstore-manual.tar.gz").write_bytes(b"not ours by name")
    stale = tmp_path / ".lobstore-20260101T000000Z.tar.gz.partial-abc"
    young = tmp_path / ".lobstore-20260221T000000Z.tar.gz.partial-def"
    stale.mkdir()
    young.mkdir()
    os.utime(stale, (time.time() - 3 * 86400,) * 2)

    removed = prune(tmp_path, keep_daily=3, keep_weekly=2)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert [name for name in left if name.startswith("lobstore-2026")] == [
        backup_name(start + timedelta(days=n)) for n in (14, 17, 18, 19)]  # Sun 15 Feb; 18-20 Feb (week of 16 Feb)
    assert "notes.txt" in left and "lobstore-manual.tar.gz" in left and young.name in left
    assert stale not in [p for p in tmp_path.iterdir()] and stale in removed


def test_the_backup_service_backs_up_at_start_and_not_again_after_a_restart(tmp_path, sqlite_file_url):
    folder = tmp_path / "backups"
    folder.mkdir()
    with open_store(sqlite_file_url) as store:
        store.tasks.create(name="worth keeping")
        service = BackupService(store, folder, interval=3600, keep_daily=2, keep_weekly=1)
        service.start()
        deadline = time.monotonic() + 30
        while service.passes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        service.stop(timeout=30)
        assert service.last_error is None
        (made,) = backups_in(folder)
        assert service.health()["last_backup"]["file"] == made.name

        again = BackupService(store, folder, interval=3600)
        again.start()
        time.sleep(0.5)
        again.stop(timeout=30)
        assert again.passes == 0  # the newest backup is younger than the interval
    restore(made, f"sqlite:///{tmp_path / 'r.db'}")
    with open_store(f"sqlite:///{tmp_path / 'r.db'}") as restored:
        assert restored.tasks.get("T1").name == "worth keeping"


def test_serve_takes_scheduled_backups_into_the_folder(tmp_path, servers):
    folder = tmp_path / "backups"
    folder.mkdir()
    server = servers(f"sqlite:///{tmp_path / 'lobwife.db'}", "--backup-dir", str(folder),
                     "--backup-keep-daily", "3")
    server.wait_for(r"backup .* written")
    assert server.terminate() == 0
    (made,) = backups_in(folder)
    assert read_manifest(made)["schema_version"] == len(packaged_migrations("sqlite"))

    again = servers(f"sqlite:///{tmp_path / 'lobwife.db'}", "--backup-dir", str(folder))
    conn = http.client.HTTPConnection("127.0.0.1", again.port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    # After a restart the last success is the newest backup's time (no new backup was due yet).
    (line,) = [l for l in text.splitlines()
               if l.startswith('lobstore_service_last_success_timestamp_seconds{service="scheduled_backups"}')]
    assert float(line.split()[-1]) == backups_in(folder)[made].timestamp()
    assert again.terminate() == 0
    assert list(backups_in(folder)) == [made]


def test_stopping_the_service_mid_backup_leaves_no_backup_file(tmp_path):
    url = big_database(tmp_path / "big.db")
    folder = tmp_path / "backups"
    folder.mkdir()
    with open_store(url) as store:
        service = BackupService(store, folder)
        service.start()
        deadline = time.monotonic() + 30
        while not any(p.name.startswith(".") for p in folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has begun writing its scratch folder
        assert service._child is not None and service._child.poll() is None
        assert service.stop(timeout=30)
    assert backups_in(folder) == {}
    assert service.last_error is not None and "failed" in service.last_error


@pytest.mark.parametrize(("flags", "message"), [
    (["--backup-dir", "/nonexistent/backups"], "does not exist"),
    (["--backup-dir", ".", "--backup-interval", "5"], "at least 60 seconds"),
    (["--backup-dir", ".", "--backup-keep-daily", "0"], "keep at least 1 daily"),
])
def test_bad_backup_settings_stop_serve_with_a_message(tmp_path, flags, message):
    run = subprocess.run([str(LOBSTORE), "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0", *flags],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 1 and message in run.stderr


def test_postgresql_urls_with_passwords_reach_pg_dump_without_the_command_line():
    backend = backend_for(f"postgresql://lobwife:{quote('s3cr:t@')}@db.example:5432/lobstore")
    uri, env = pgtools.connection(backend)
    assert "s3cr" not in uri and env["PGPASSWORD"] == "s3cr:t@"
    backend.close()
