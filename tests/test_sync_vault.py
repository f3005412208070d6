"""Vault sync against real git repositories: a bare "remote", the sync's clone, and a person's
clone. Assertions are about what a person would see: file bytes, folders, commits."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lobstore import ConfigurationError, open_store
from lobstore.cli import main
from lobstore.sync.cycle import FEED_OVERLAP, VaultSync
from lobstore.sync.daemon import Debouncer, SyncDaemon, is_significant
from lobstore.sync.frontmatter import parse, split
from lobstore.sync.gitops import GitVault, git_processes_in


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def clone(remote: Path, dest: Path, who: str) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(dest)], check=True, capture_output=True)
    git(dest, "config", "user.name", who)
    git(dest, "config", "user.email", f"{who}@example.com")
    git(dest, "symbolic-ref", "HEAD", "refs/heads/main")
    return dest


@pytest.fixture
def remote(tmp_path) -> Path:
    path = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path


@pytest.fixture
def vault(tmp_path, remote) -> Path:
    return clone(remote, tmp_path / "vault", "sync-host")


@pytest.fixture
def person(tmp_path, remote) -> Path:
    return tmp_path / "person"  # cloned once the remote has something


def make_sync(store, vault, **options) -> VaultSync:
    options.setdefault("backoff", 0.01)
    return VaultSync(store, vault, **options)


def ok(result):
    assert result.error is None, result.error
    return result


def commits(repo: Path, ref: str = "HEAD") -> int:
    return int(git(repo, "rev-list", "--count", ref))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    }


def frontmatter_of(path: Path) -> dict:
    return parse(split(path.read_text()).frontmatter)


# -- acceptance 1: people's bodies and keys survive a status change --------------------------
def test_person_edits_survive_a_status_change_and_the_file_moves(db_url, tmp_path, remote, vault, person):
    with open_store(db_url) as store:
        store.tasks.create(name="Unity UI overhaul", repos=["minsley/unity"], description="Rework the HUD.")
        sync = make_sync(store, vault)
        ok(sync.run_cycle())
        clone(remote, person, "anna")
        path = person / "010-tasks/active/T1.md"
        original = path.read_text()
        assert original.startswith("---\nid: T1\nname: Unity UI overhaul\n")
        assert "# Unity UI overhaul\n\n## Objective\n\nRework the HUD.\n\n## Acceptance Criteria\n" in original
        # Anna adds a key of her own (with a comment) and rewrites the body, then pushes.
        fm = split(original).frontmatter
        her_lines = "reviewer: anna   # ask me before merging\n"
        her_body = "# Unity UI overhaul\n\n## Objective\n\nRework the HUD — *and* the menus.\n\n## Lobster Notes\n\n- tried X\n"
        path.write_text(f"---\n{fm}{her_lines}---\n{her_body}")
        git(person, "commit", "-qam", "anna: notes on T1")
        git(person, "push", "-q", "origin", "main")

        store.tasks.update("T1", status="active", assigned_to="lobster-swe-t1")
        store.tasks.update("T1", status="completed")
        result = ok(sync.run_cycle())

    assert (result.tasks_changed, result.pushed) == (1, True)
    assert not (vault / "010-tasks/active/T1.md").exists()
    text = (vault / "010-tasks/completed/T1.md").read_text()
    fm, body = split(text).frontmatter, split(text).body
    assert body == her_body
    assert her_lines in fm
    assert frontmatter_of(vault / "010-tasks/completed/T1.md")["status"] == "completed"
    assert frontmatter_of(vault / "010-tasks/completed/T1.md")["reviewer"] == "anna"
    # git sees a rename, and the remote has it.
    changes = git(vault, "show", "--name-status", "-M", "--format=", "HEAD").splitlines()
    status, old, new = next(line.split() for line in changes if "T1.md" in line)
    assert status.startswith("R") and (old, new) == ("010-tasks/active/T1.md", "010-tasks/completed/T1.md")
    assert git(vault, "log", "-1", "--format=%s", "origin/main") == "lobstore sync: 1 task changed"


# -- acceptance 2: nothing changed, nothing written ------------------------------------------
def test_a_quiet_cycle_writes_no_file_and_makes_no_commit(db_url, vault):
    with open_store(db_url) as store:
        for n in range(5):
            store.tasks.create(name=f"task {n}", description=f"do {n}")
        store.tasks.update("T2", status="active")
        sync = make_sync(store, vault)
        ok(sync.run_cycle())
        head, before = git(vault, "rev-parse", "HEAD"), snapshot(vault)
        quiet = ok(sync.run_cycle())
        full = ok(sync.run_cycle(full=True))
    assert (quiet.commit, quiet.files_changed, quiet.full) == (None, 0, False)
    assert (full.commit, full.files_changed, full.full) == (None, 0, True)
    assert git(vault, "rev-parse", "HEAD") == head
    assert snapshot(vault) == before  # same bytes, same modification times


# -- acceptance 3: the remote, concurrent pushes, locks --------------------------------------
def test_a_clone_made_while_the_remote_was_empty_starts_from_what_another_vault_pushed(store, tmp_path, remote,
                                                                                      vault):
    """Two replicas' vaults, both cloned from an empty remote: the second one's first cycle
    (after it takes the vault-sync duty over) builds on the first one's commits."""
    second = clone(remote, tmp_path / "second", "replica-2")
    store.tasks.create(name="first")
    assert ok(make_sync(store, vault).run_cycle()).pushed
    store.tasks.create(name="second")
    assert ok(make_sync(store, second).run_cycle(full=True)).pushed
    assert git(second, "rev-list", "--count", "HEAD") == str(commits(vault) + 1)
    assert git(remote, "rev-parse", "main") == git(second, "rev-parse", "HEAD")


def test_a_push_that_lands_between_our_pull_and_push_is_merged(store, remote, vault, person):
    store.tasks.create(name="Race me", description="first")
    sync = make_sync(store, vault)
    ok(sync.run_cycle())
    clone(remote, person, "anna")
    theirs = person / "010-tasks/active/T1.md"
    theirs.write_text(theirs.read_text().replace("## Lobster Notes\n", "## Lobster Notes\n\nanna was here\n"))
    git(person, "commit", "-qam", "anna: body")
    store.tasks.update("T1", status="failed")
    # Anna pushes after our pull: simulate by skipping our pull this once.
    pull = sync.git.pull
    sync.git.pull = lambda: True
    git(person, "push", "-q", "origin", "main")
    result = ok(sync.run_cycle())
    sync.git.pull = pull

    assert result.pushed and not result.took_remote
    git(person, "pull", "-q", "--rebase")
    text = (person / "010-tasks/failed/T1.md").read_text()
    assert "anna was here" in text and "status: failed" in text
    assert not (person / "010-tasks/active/T1.md").exists()
    assert "anna: body" in git(person, "log", "--format=%s")


def test_a_rebase_conflict_takes_the_remote_and_renders_again(store, remote, vault, person):
    store.tasks.create(name="Contested", description="first")
    sync = make_sync(store, vault)
    ok(sync.run_cycle())
    clone(remote, person, "anna")
    theirs = person / "010-tasks/active/T1.md"
    # Anna edits an owned line (priority) and the body; the database changes the same line.
    theirs.write_text(theirs.read_text().replace("priority: normal", "priority: low")
                      .replace("## Result\n", "## Result\n\nanna's result\n"))
    git(person, "commit", "-qam", "anna: priority and result")
    store.tasks.update("T1", priority="critical")
    sync.git.pull, pull = (lambda: True), sync.git.pull
    git(person, "push", "-q", "origin", "main")
    result = ok(sync.run_cycle())
    sync.git.pull = pull

    assert result.took_remote and result.pushed
    git(person, "pull", "-q", "--rebase")
    text = theirs.read_text()
    assert "priority: critical" in text  # the database wins for its own keys
    assert "anna's result" in text  # her body survives
    assert git(vault, "for-each-ref", "--format=%(refname)", "refs/lobstore/discarded")  # ours kept
    assert git(vault, "status", "--porcelain") == ""


def diverged(remote: Path, vault: Path, person: Path) -> GitVault:
    """The vault one commit ahead of a remote that moved on with another change to the same
    line (what a conflicting rebase leaves the sync to resolve by taking the remote)."""
    (vault / "notes").mkdir()
    (vault / "notes/shared.md").write_text("first\n")
    (vault / "notes/other.md").write_text("other\n")
    git(vault, "add", "-A")
    git(vault, "commit", "-qm", "start")
    git(vault, "push", "-q", "origin", "main")
    clone(remote, person, "anna")
    (person / "notes/shared.md").write_text("anna's line\n")
    git(person, "commit", "-qam", "anna")
    git(person, "push", "-q", "origin", "main")
    (vault / "notes/shared.md").write_text("our line\n")
    git(vault, "commit", "-qam", "ours")
    vault_git = GitVault(vault)
    assert vault_git.fetch() and not vault_git.rebase_onto_remote()  # the rebase conflicts
    return vault_git


def test_taking_the_remote_keeps_uncommitted_edits_in_the_working_copy(remote, vault, person):
    vault_git = diverged(remote, vault, person)
    ours = vault_git.head()
    (vault / "notes/other.md").write_text("other, edited by hand\n")  # tracked, not changed remotely
    (vault / "notes/scratch.md").write_text("a new note\n")  # untracked
    ref = vault_git.take_remote()
    assert vault_git.head() == git(person, "rev-parse", "HEAD")
    assert (vault / "notes/shared.md").read_text() == "anna's line\n"
    assert (vault / "notes/other.md").read_text() == "other, edited by hand\n"
    assert (vault / "notes/scratch.md").read_text() == "a new note\n"
    assert git(vault, "rev-parse", ref) == ours  # our commit kept under a ref
    assert git(vault, "stash", "list") == ""  # popped back into the working copy


def test_uncommitted_edits_that_conflict_with_the_remote_are_kept_whole_beside_the_file(remote, vault, person):
    vault_git = diverged(remote, vault, person)
    (vault / "notes/shared.md").write_text("our line, edited again by hand\n")
    vault_git.take_remote()
    assert (vault / "notes/shared.md").read_text() == "anna's line\n"  # no conflict markers
    assert (vault / "notes/shared.conflict.md").read_text() == "our line, edited again by hand\n"
    assert vault_git.conflicts == ["notes/shared.conflict.md"]
    assert git(vault, "status", "--porcelain") == "?? notes/shared.conflict.md"
    assert git(vault, "stash", "list") == ""


def test_an_untracked_file_the_remote_now_tracks_is_kept_beside_it(remote, vault, person):
    vault_git = diverged(remote, vault, person)
    (vault / "notes/other.md").write_text("other, edited by hand\n")
    git(person, "pull", "-q")
    (person / "notes/new.md").write_text("anna's new note\n")
    git(person, "add", "-A")
    git(person, "commit", "-qm", "anna: new note")
    git(person, "push", "-q", "origin", "main")
    (vault / "notes/new.md").write_text("bob's new note\n")  # untracked here
    assert vault_git.fetch()
    vault_git.take_remote()
    assert (vault / "notes/new.md").read_text() == "anna's new note\n"
    assert (vault / "notes/new.conflict.md").read_text() == "bob's new note\n"
    assert (vault / "notes/other.conflict.md").read_text() == "other, edited by hand\n"
    assert git(vault, "stash", "list") == ""


def test_a_stale_lock_is_removed_and_the_cycle_succeeds(store, vault):
    store.tasks.create(name="x")
    for name in ("HEAD.lock", "index.lock"):
        lock = vault / ".git" / name
        lock.write_text("")
        old = time.time() - 3600
        os.utime(lock, (old, old))
    result = ok(make_sync(store, vault, lock_stale_after=600).run_cycle())
    assert result.commit is not None
    assert not (vault / ".git/HEAD.lock").exists() and not (vault / ".git/index.lock").exists()


def test_a_lock_held_by_a_live_git_process_is_left_and_the_cycle_retries_later(store, vault):
    store.tasks.create(name="x")
    lock = vault / ".git/index.lock"
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))  # old enough to be stale, were it not for the process
    holder = subprocess.Popen(["git", "hash-object", "--stdin"], cwd=vault,
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: holder.pid in (git_processes_in(vault) or []))  # Popen may return before the exec
        sync = make_sync(store, vault, lock_stale_after=600)
        busy = sync.run_cycle()
        assert "held by a running git process" in busy.error and busy.commit is None
        assert lock.exists()
        assert git(vault, "log", "--oneline", "--all") == ""
    finally:
        holder.communicate(b"done")
    ok(sync.run_cycle())  # the process is gone: the lock is stale now, removed, and the cycle runs
    assert not lock.exists() and commits(vault) == 1


def test_a_fresh_lock_without_a_process_is_left_until_it_is_stale(store, vault):
    store.tasks.create(name="x")
    lock = vault / ".git/index.lock"
    lock.write_text("")
    result = make_sync(store, vault, lock_stale_after=600).run_cycle()
    assert "stale after 600s" in result.error and lock.exists()


def test_the_daemon_retries_a_failed_cycle(store, vault):
    store.tasks.create(name="x")
    lock = vault / ".git/index.lock"
    lock.write_text("")
    daemon = SyncDaemon(store, vault, interval=3600, retry_delay=0.05, poll=0.02, lock_stale_after=600)
    daemon.start()
    try:
        wait_for(lambda: daemon.last_cycle and daemon.last_cycle["error"])
        lock.unlink()  # the git command that held it finished
        wait_for(lambda: daemon.last_cycle["commit"])
    finally:
        daemon.stop()
    assert commits(vault) == 1


def test_a_vault_without_a_remote_works_locally(store, tmp_path):
    local = tmp_path / "local"
    subprocess.run(["git", "init", "-q", "-b", "main", str(local)], check=True)
    store.tasks.create(name="offline")
    result = ok(make_sync(store, local).run_cycle())
    assert result.commit and not result.pushed
    assert (local / "010-tasks/active/T1.md").exists() and commits(local) == 1
    assert git(local, "log", "-1", "--format=%an <%ae>") == "lobstore sync <lobstore-sync@localhost>"


# -- acceptance 4: a burst makes one commit --------------------------------------------------
def test_fifty_status_changes_in_a_burst_make_one_commit(store, vault):
    for n in range(50):
        store.tasks.create(name=f"task {n}")
    daemon = SyncDaemon(store, vault, interval=3600, debounce=1.0, max_delay=30, poll=0.05,
                        author_name="Lob Sync", author_email="sync@lob.example")
    daemon.start()
    try:
        wait_for(lambda: daemon.cycles >= 1)
        assert daemon.last_cycle["tasks_changed"] == 50
        first = commits(vault)
        for n in range(1, 51):
            store.tasks.update(n, status="active")
            store.tasks.update(n, status="completed")  # significant: completion
        wait_for(lambda: daemon.cycles >= 2)
    finally:
        daemon.stop()
    assert commits(vault) == first + 1
    assert git(vault, "log", "-1", "--format=%s|%an") == "lobstore sync: 50 tasks changed|Lob Sync"
    assert len(list((vault / "010-tasks/completed").glob("T*.md"))) == 50
    assert commits(vault, "origin/main") == first + 1


def test_debouncer_waits_for_quiet_but_not_forever():
    bounce = Debouncer(quiet=2.0, max_delay=10.0)
    assert bounce.due_at() is None
    for step in range(50):  # 50 events within two seconds
        bounce.note(100.0 + step * 0.04)
    assert not bounce.due(101.96 + 1.9) and bounce.due(101.96 + 2.0)
    bounce.reset()
    for step in range(100):  # a stream that never pauses still syncs after max_delay
        bounce.note(200.0 + step)
    assert bounce.due_at() == 210.0


def test_significant_events_are_creation_completion_and_failure(store):
    store.tasks.create(name="a")
    store.tasks.update(1, status="active")
    store.tasks.update(1, priority="high")
    store.tasks.update(1, status="failed")
    flags = [is_significant(e) for e in store.events.feed()]
    assert flags == [True, False, False, True]


# -- acceptance 5: values that would break YAML ----------------------------------------------
def test_awkward_values_round_trip_through_safe_load(store, vault):
    store.tasks.create(
        name="Fix: the login # again", assigned_to="@lobster-swe", model="no", tags=["yes", "2026-01-01"],
        repos=["acme/web"], estimate_minutes=30,
    )
    ok(make_sync(store, vault).run_cycle())
    loaded = yaml.safe_load(split((vault / "010-tasks/active/T1.md").read_text()).frontmatter)
    assert loaded["name"] == "Fix: the login # again"
    assert loaded["assigned_to"] == "@lobster-swe"
    assert loaded["model"] == "no"
    assert loaded["tags"] == ["yes", "2026-01-01"]
    assert loaded["repos"] == ["acme/web"] and loaded["estimate"] == 30
    assert loaded["created"].tzinfo is not None  # an ISO date with T and Z: Dataview reads a date


# -- more of what people notice ----------------------------------------------------------------
def test_an_incremental_cycle_looks_only_at_changed_tasks_and_a_full_one_at_all(store, vault):
    store.tasks.create(name="a")
    store.tasks.create(name="b")
    with store.transaction() as tx:
        # Where commits can land out of id order (PostgreSQL) a cycle looks back FEED_OVERLAP
        # event ids too: these put T1's last event behind that window on every backend.
        for n in range(FEED_OVERLAP):
            tx.events.add("T2", "note", detail=f"note {n}")
    sync = make_sync(store, vault)
    ok(sync.run_cycle())
    t1 = vault / "010-tasks/active/T1.md"
    t1.write_text(t1.read_text().replace("priority: normal", "priority: low"))  # edits an owned key
    store.tasks.update("T2", priority="high")
    incremental = ok(sync.run_cycle())
    assert (incremental.full, incremental.tasks_changed) == (False, 1)
    assert "priority: low" in t1.read_text()
    full = ok(sync.run_cycle(full=True))
    assert full.tasks_changed == 1 and "priority: normal" in t1.read_text()


def test_a_file_with_broken_frontmatter_is_left_alone_and_reported(store, vault):
    store.tasks.create(name="a")
    sync = make_sync(store, vault)
    ok(sync.run_cycle())
    t1 = vault / "010-tasks/active/T1.md"
    broken = "---\nid: T1\nnotes: [unclosed\n---\nmy body\n"
    t1.write_text(broken)
    store.tasks.update("T1", status="completed", force=True)
    result = ok(sync.run_cycle())
    assert t1.read_text() == broken
    assert not (vault / "010-tasks/completed/T1.md").exists()
    assert any("T1.md" in s and "not valid YAML" in s for s in result.skipped)


def test_text_outside_the_generated_region_of_a_page_is_kept(store, vault):
    store.tasks.create(name="a")
    sync = make_sync(store, vault)
    ok(sync.run_cycle())
    overview = vault / "010-tasks/_overview.md"
    text = overview.read_text()
    doc = split(text)
    mine = "My own intro.\n\n"
    overview.write_text(f"---\n{doc.frontmatter}team: ops\n---\n{mine}{doc.body}\nMy footnote.\n")
    store.tasks.create(name="b", type="research")
    ok(sync.run_cycle())
    after = overview.read_text()
    assert after.startswith("---\nlobstore: overview\ntotal: 2\n")
    assert "team: ops\n" in after and f"---\n{mine}<!-- lobstore:begin" in after
    assert after.endswith("<!-- lobstore:end -->\n\nMy footnote.\n")
    assert frontmatter_of(overview)["by_type"] == {"research": 1, "swe": 1}
    assert "| [[T1]] |" not in after and "| research | 1 |" in after


def test_the_last_cycle_is_kept_in_the_database(store, vault):
    store.tasks.create(name="a")
    result = ok(make_sync(store, vault).run_cycle())
    state = store.sync_state.get(str(vault.resolve()))
    assert state.last_cycle == result.to_dict() and state.last_event_id == store.events.latest_id()
    assert set(result.to_dict()) >= {"time", "commit", "files_changed", "error"}


def test_a_folder_that_is_not_a_git_repository_is_a_clear_error(store, tmp_path, capsys):
    with pytest.raises(ConfigurationError, match="is not a git repository"):
        VaultSync(store, tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        VaultSync(store, tmp_path / "nowhere")
    assert main(["sync", "--vault", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 1
    assert "is not a git repository" in capsys.readouterr().err


def test_the_cli_runs_one_cycle(db_url, vault, capsys, monkeypatch):
    url = db_url
    monkeypatch.delenv("LOBSTORE_VAULT", raising=False)
    assert main(["--db", url, "tasks", "create", "From the CLI"]) == 0
    assert main(["sync", "--vault", str(vault), "--db", url, "--json", "--author", "Ops <ops@x.org>"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["tasks_changed"] == 1 and out["pushed"] and out["error"] is None
    assert git(vault, "log", "-1", "--format=%an <%ae>") == "Ops <ops@x.org>"
    assert main(["sync", "--db", url]) == 1
    assert "no vault: give --vault PATH or set $LOBSTORE_VAULT" in capsys.readouterr().err


def wait_for(condition, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (fails the test after ``timeout``; never a timing assert)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.02)


# -- costs and audits in the vault -------------------------------------------------------------
def test_a_tasks_cost_so_far_follows_its_cost_events(db_url, vault):
    with open_store(db_url) as store:
        sync = make_sync(store, vault)
        store.tasks.create(name="costly", repos=["acme/web"])
        ok(sync.run_cycle())
        task_file = vault / "010-tasks/active/T1.md"
        assert frontmatter_of(task_file)["cost_usd"] == 0.0
        before = commits(vault)

        # Only cost events arrive: no task event, yet the next (incremental) cycle renders T1.
        store.costs.record(task_id="T1", model="claude-opus-4-6", input_tokens=1200, output_tokens=300)
        store.costs.record(task_id="T1", model="claude-haiku-4-5", cost_usd=0.000001)
        result = ok(sync.run_cycle(full=False))
        assert result.tasks_changed == 1 and commits(vault) == before + 1
        assert frontmatter_of(task_file)["cost_usd"] == 0.013501
        costs_page = frontmatter_of(vault / "lobstore/costs.md")
        assert costs_page["total_usd"] == 0.013501 and costs_page["events"] == 2
        assert costs_page["by_model"] == {"claude-opus-4-6": 0.0135, "claude-haiku-4-5": 0.000001}

        quiet = ok(sync.run_cycle(full=False))
        assert (quiet.files_changed, quiet.commit) == (0, None)


def test_the_cost_page_covers_the_30_days_up_to_the_newest_event(store, vault):
    sync = make_sync(store, vault)
    for day, model in ((1, "claude-opus-4-6"), (20, "claude-opus-4-6"), (31, "claude-sonnet-4-5"),
                       (31, "no-price")):
        store.costs.record(model=model, input_tokens=1_000_000, created_at=f"2026-01-{day:02d}T12:00:00Z")
    ok(sync.run_cycle())
    page = (vault / "lobstore/costs.md").read_text()
    keys = frontmatter_of(vault / "lobstore/costs.md")
    assert "since: 2026-01-02T00:00:00Z\nuntil: 2026-02-01T00:00:00Z\n" in page  # Jan 1 is out
    assert keys["by_day"] == {"2026-01-20": 5.0, "2026-01-31": 3.0}
    assert keys["total_usd"] == 8.0 and keys["uncosted_events"] == 1
    assert "| 2026-01-31 | 3.00 | 2 |" in page
    assert "1 call had no price for its model" in page
    # Nothing changed in the database: the same page, whatever the clock says.
    assert ok(sync.run_cycle(full=True)).files_changed == 0


def test_the_cost_page_reads_the_rollups_over_pruned_days_and_says_so(store, vault):
    from datetime import timedelta

    from lobstore.maintenance.prune import prune

    sync = make_sync(store, vault)
    store.tasks.create(name="t")
    for day in (20, 31):
        store.costs.record(task="T1", model="claude-opus-4-6", input_tokens=1_000_000,
                           created_at=f"2026-01-{day:02d}T12:00:00Z")
    ok(sync.run_cycle())
    before = frontmatter_of(vault / "lobstore/costs.md")
    assert "pruned" not in (vault / "lobstore/costs.md").read_text()
    assert prune(store, costs_older_than=timedelta(days=180)).cost_events == 2  # January: long ago
    ok(sync.run_cycle(full=True))
    page = (vault / "lobstore/costs.md").read_text()
    after = frontmatter_of(vault / "lobstore/costs.md")
    assert (after["by_day"], after["total_usd"]) == (before["by_day"], before["total_usd"]) == (
        {"2026-01-20": 5.0, "2026-01-31": 5.0}, 10.0)
    assert "were pruned: the days before it are summed from the hourly rollups" in page
    assert store.costs.for_task("T1").totals.cost_micro == 10_000_000


def test_the_audit_page_lists_open_findings_by_severity(store, vault):
    sync = make_sync(store, vault)
    store.audits.submit("security", [
        {"severity": "critical", "title": "token | in logs", "target": "lobwife"},
        {"severity": "info", "title": "unused label", "target": "acme/web"},
    ])
    store.audits.submit("infra", [{"severity": "warning", "title": "disk 85%", "target": "node-1"}])
    store.audits.update(2, status="resolved", resolution="removed")
    ok(sync.run_cycle())
    page = (vault / "lobstore/audits.md").read_text()
    keys = frontmatter_of(vault / "lobstore/audits.md")
    assert keys["open"] == 2
    assert keys["by_severity"] == {"critical": 1, "warning": 1, "info": 0}
    assert keys["by_type"] == {"infra": 1, "security": 1}
    assert page.index("## Critical (1)") < page.index("## Warning (1)")
    assert "token \\| in logs" in page and "[[T1]]" in page  # the fix task of the critical one
    assert "unused label" not in page
    dashboard = (vault / "lobstore/dashboard.md").read_text()
    assert "[[lobstore/audits|Open audit findings]]: 1 critical, 1 warning" in dashboard
    assert "[[lobstore/costs|Costs, last 30 days]]: no cost events yet" in dashboard


def test_an_event_committed_after_a_higher_id_is_still_rendered_on_postgresql(postgres_url, vault):
    """On PostgreSQL a transaction that took id 1 can commit after one that took id 2: the
    cycle in between saw only 2. The next incremental cycle must still render task 1."""
    import threading

    with open_store(postgres_url) as store:
        sync = make_sync(store, vault)
        created, release = threading.Event(), threading.Event()

        def slow_writer():
            with store.transaction() as tx:
                tx.tasks.create(name="committed late")  # takes id 1 and event id 1
                created.set()
                release.wait(30)

        writer = threading.Thread(target=slow_writer)
        writer.start()
        assert created.wait(30)
        assert store.tasks.create(name="committed first").id == 2
        ok(sync.run_cycle())
        assert (vault / "010-tasks/active/T2.md").exists() and not (vault / "010-tasks/active/T1.md").exists()
        release.set()
        writer.join()

        result = ok(sync.run_cycle(full=False))
        assert (vault / "010-tasks/active/T1.md").exists()
        assert result.tasks_changed == 1 and not result.full


# -- a person's uncommitted edit that the remote contradicts ---------------------------------
def test_an_uncommitted_edit_the_remote_contradicts_is_kept_whole_and_never_committed(store, remote, vault, person):
    # The sequence of issue 16: an uncommitted edit in the vault, the same line changed on the
    # remote, a cycle. No conflict markers may reach a commit, no stash may stay behind.
    store.tasks.create(name="Contested note", description="first")
    sync = make_sync(store, vault)
    ok(sync.run_cycle())
    clone(remote, person, "anna")
    theirs = person / "010-tasks/active/T1.md"
    theirs.write_text(theirs.read_text().replace("## Lobster Notes\n", "## Lobster Notes\n\nanna's note\n"))
    git(person, "commit", "-qam", "anna: a note")
    git(person, "push", "-q", "origin", "main")
    ours = vault / "010-tasks/active/T1.md"
    mine = ours.read_text().replace("## Lobster Notes\n", "## Lobster Notes\n\nbob's note, not committed\n")
    ours.write_text(mine)
    (vault / "scratch.md").write_text("bob's untracked scratch\n")  # re-applied: no conflict
    store.tasks.update("T1", priority="high")

    result = make_sync(store, vault).run_cycle()

    assert result.error is None and result.status == "conflict"
    assert result.conflicts == ("010-tasks/active/T1.conflict.md",)
    assert (vault / "010-tasks/active/T1.conflict.md").read_text() == mine  # kept whole
    assert (vault / "scratch.md").read_text() == "bob's untracked scratch\n"
    assert git(vault, "stash", "list") == ""
    for ref in ("HEAD", "origin/main"):
        assert "<<<<<<<" not in git(vault, "log", "-p", ref) and ">>>>>>>" not in git(vault, "log", "-p", ref)
    text = ours.read_text()
    assert "anna's note" in text and "priority: high" in text and "<<<<<<<" not in text
    assert result.pushed and git(vault, "rev-parse", "HEAD") == git(vault, "rev-parse", "origin/main")
    # The copy stays the person's: uncommitted, and /api/sync (the recorded cycle) names it.
    assert "T1.conflict.md" not in git(vault, "ls-files")
    assert store.sync_state.get(str(vault.resolve())).last_cycle["conflicts"] == list(result.conflicts)
    assert store.sync_state.get(str(vault.resolve())).last_cycle["status"] == "conflict"
    # The next cycle is a plain one again, and leaves the copy alone.
    again = ok(sync.run_cycle())
    assert (again.status, again.conflicts) == ("ok", ())
    assert (vault / "010-tasks/active/T1.conflict.md").read_text() == mine


def test_a_large_commit_stages_whole_folders_but_never_a_conflict_copy(store, vault, monkeypatch):
    from lobstore.sync import gitops

    monkeypatch.setattr(gitops, "STAGE_FOLDERS_OVER", 0)  # what a first render of thousands does
    for n in range(5):
        store.tasks.create(name=f"task {n}")
    sync = make_sync(store, vault)
    ok(sync.run_cycle())
    (vault / "010-tasks/active/T2.conflict.md").write_text("a person's copy\n")
    store.tasks.update("T1", status="active")
    store.tasks.update("T1", status="completed")
    store.tasks.update("T3", name="renamed")
    result = ok(sync.run_cycle())
    assert result.tasks_changed == 2 and result.pushed
    tracked = git(vault, "ls-files").splitlines()
    assert "010-tasks/completed/T1.md" in tracked and "010-tasks/active/T1.md" not in tracked
    assert "010-tasks/active/T2.conflict.md" not in tracked
    assert git(vault, "status", "--porcelain") == "?? 010-tasks/active/T2.conflict.md"


def test_an_uncommitted_edit_to_a_file_the_remote_removed_is_kept_beside_it(remote, vault, person):
    (vault / "notes").mkdir()
    (vault / "notes/gone.md").write_text("first\n")
    git(vault, "add", "-A")
    git(vault, "commit", "-qm", "start")
    git(vault, "push", "-q", "origin", "main")
    clone(remote, person, "anna")
    git(person, "rm", "-q", "notes/gone.md")
    git(person, "commit", "-qm", "anna removes it")
    git(person, "push", "-q", "origin", "main")
    (vault / "notes/gone.md").write_text("first, and more by hand\n")
    vault_git = GitVault(vault)
    assert vault_git.pull()
    assert not (vault / "notes/gone.md").exists()
    assert (vault / "notes/gone.conflict.md").read_text() == "first, and more by hand\n"
    assert vault_git.conflicts == ["notes/gone.conflict.md"]
    assert git(vault, "stash", "list") == "" and git(vault, "status", "--porcelain", "-uall") == "?? notes/gone.conflict.md"


@pytest.mark.backends("sqlite-memory")
def test_a_replica_standing_by_for_the_vault_sync_says_so_and_runs_no_cycle(store, tmp_path, remote, vault):
    """Two daemons on one database (the in-memory store's duty is per database): the second
    stands by; a trigger sent to it says another replica syncs, and it commits nothing."""
    from lobstore.adapters.http import make_app
    from wsgi_client import WsgiClient

    second_vault = clone(remote, tmp_path / "second", "replica-2")
    holder, standby = SyncDaemon(store, vault, interval=60), SyncDaemon(store, second_vault, interval=60)
    holder.start()
    try:
        wait_for(lambda: holder.cycles == 1)
        standby.start()
        wait_for(lambda: standby.standing_by)  # it has looked: another process holds the duty
        client = WsgiClient(make_app(store, sync=standby))
        response = client.post("/api/sync/trigger")
        assert (response.status, response.json["status"]) == (202, "standby")
        assert client.get("/api/sync").json["duty_held"] is False
        assert standby.cycles == 0 and not (second_vault / ".git" / "refs" / "heads" / "main").exists()
        assert WsgiClient(make_app(store, sync=holder)).post("/api/sync/trigger").json["status"] == "triggered"
    finally:
        standby.stop(timeout=10)
        holder.stop(timeout=10)


def test_feed_events_of_no_task_are_skipped_by_an_incremental_cycle(store, vault):
    sync = make_sync(store, vault)
    store.tasks.create(name="a")
    store.tasks.create(name="b")
    ok(sync.run_cycle())
    # cost, audit_finding and budget_alert events with no task, and one cost event on T2
    store.budgets.create(scope="fleet", period="total", limit_usd=1)
    store.costs.record_many([{"model": "m", "cost_usd": 0.9}, {"task": "T2", "model": "m", "cost_usd": 0.01}])
    store.audits.submit("infra", [{"severity": "warning", "title": "disk 85%", "target": "node-1"}])
    assert any(e.task_id is None for e in store.events.feed(after=0, limit=1000))
    result = ok(sync.run_cycle())
    assert (result.full, result.tasks_changed) == (False, 1)  # T2's cost so far; nothing for events of no task
    assert "disk 85%" in (vault / "lobstore/audits.md").read_text()
