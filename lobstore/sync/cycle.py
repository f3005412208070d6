"""One sync cycle: pull, render what changed, commit once, push.

A cycle follows the event feed from where the last one stopped, so it reads and renders only
the tasks that changed; a full reconcile (every task) runs on the first cycle, every
``full_every`` seconds, and after the remote had to be taken over a conflicting rebase.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from itertools import islice
from typing import Any

from .. import status as st
from ..clock import to_iso, utcnow
from ..errors import LobstoreError
from ..models import SEVERITIES, SyncState, Task
from ..store import Store
from .frontmatter import FrontmatterError
from .gitops import DEFAULT_LOCK_STALE_AFTER, GitVault, PushRejectedError, SyncError
from .files import DEFAULT_REPORTS_DIR, DEFAULT_TASKS_DIR, read_text, task_files, write_atomic
from .render import AuditData, CostData, Page, Renderer, VaultData, default_pages

log = logging.getLogger(__name__)

DEFAULT_MESSAGE = "lobstore sync: {tasks} changed"
DEFAULT_FULL_EVERY = 3600.0
OVERVIEW_ROWS = 50  # rows of the overview's tables; Dataview lists the rest live
# Past this many changed tasks one pass over all of them is cheaper than one query each.
INCREMENTAL_LIMIT = 500
PAGE = 1000
COST_BATCH = 500  # tasks whose costs are read in one query
FEED_OVERLAP = 200  # ids looked at again each cycle where commits can land out of id order
COST_DAYS = 30  # the cost page's window
AUDIT_ROWS = 100  # findings listed per severity on the audit page


@dataclass(frozen=True)
class CycleResult:
    """What a cycle did: what ``GET /api/sync`` shows."""

    time: str  # when it finished
    started_at: str
    full: bool = False
    commit: str | None = None
    files_changed: int = 0
    tasks_changed: int = 0
    pushed: bool = False
    took_remote: bool = False
    skipped: tuple[str, ...] = ()  # files left alone, with the reason
    error: str | None = None
    # Copies of uncommitted edits the remote contradicted (``T1.conflict.md``), for a person.
    conflicts: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``ok``; ``conflict`` when a person's uncommitted edit had to be set aside; ``error``."""
        return "error" if self.error is not None else "conflict" if self.conflicts else "ok"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = list(self.skipped)
        out["conflicts"] = list(self.conflicts)
        out["status"] = self.status
        return out


@dataclass
class _Outcome:
    paths: set[str] = field(default_factory=set)  # for git: written, created and removed
    files: int = 0
    tasks: dict[str, None] = field(default_factory=dict)  # refs, once each, in order
    skipped: list[str] = field(default_factory=list)

    def add(self, other: _Outcome) -> None:
        self.paths |= other.paths
        self.files += other.files
        self.tasks.update(other.tasks)  # a dict: adding 50,000 refs stays linear
        self.skipped += other.skipped


class VaultSync:
    """Renders ``store`` into the git vault at ``vault``; :meth:`run_cycle` does one cycle."""

    def __init__(
        self,
        store: Store,
        vault: str | os.PathLike[str],
        *,
        tasks_dir: str = DEFAULT_TASKS_DIR,
        reports_dir: str = DEFAULT_REPORTS_DIR,
        pages: Sequence[Page] | None = None,
        remote: str = "origin",
        author_name: str = "lobstore sync",
        author_email: str = "lobstore-sync@localhost",
        message: str = DEFAULT_MESSAGE,
        push_attempts: int = 5,
        backoff: float = 1.0,
        full_every: float = DEFAULT_FULL_EVERY,
        lock_stale_after: float = DEFAULT_LOCK_STALE_AFTER,
        extra_keys: Callable[[Task], Mapping[str, Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.git = GitVault(
            vault, remote=remote, author_name=author_name, author_email=author_email,
            lock_stale_after=lock_stale_after,
        )
        self.root = self.git.path
        self.key = str(self.root)  # the sync_state row of this vault
        self.renderer = Renderer(tasks_dir=tasks_dir)
        self.pages = list(pages) if pages is not None else default_pages(tasks_dir, reports_dir)
        self.message = message
        self.push_attempts = max(1, push_attempts)
        self.backoff = backoff
        self.full_every = full_every
        self.extra_keys = extra_keys  # more store-owned keys per task, beside the built-in ones
        self._sleep = sleep

    # -- the cycle ---------------------------------------------------------------------------
    def run_cycle(self, *, full: bool | None = None) -> CycleResult:
        """Run one cycle; errors are reported in the result (and logged), not raised, so a
        daemon keeps going and retries. ``full`` forces (True) or forbids (False) a reconcile
        of every task; by default the cycle decides."""
        started = utcnow()
        state = self.store.sync_state.get(self.key)
        outcome = _Outcome()
        commit = None
        pushed = took_remote = False
        error = None
        new_state = state
        self.git.conflicts.clear()
        try:
            self.git.clear_stale_locks()
            if not self.git.pull():
                self.git.take_remote()
                took_remote, full = True, True
            latest = self.store.events.latest_id()
            latest_cost = self.store.costs.latest_id()
            if full is None:
                full = self._full_due(state, started)
            outcome = self._render(full, after=state.last_event_id, after_cost=state.last_cost_event_id)
            if outcome.paths:
                commit = self.git.commit(outcome.paths, self._commit_message(outcome))
            pushed, retook, extra = self._push()
            if retook:
                took_remote = True
                outcome.add(extra)
            if commit or extra.paths:
                commit = self.git.head()
            new_state = SyncState(
                last_event_id=latest,
                last_full_at=started if full else state.last_full_at,
                last_cycle=state.last_cycle,
                last_cost_event_id=latest_cost,
            )
        except (LobstoreError, OSError) as exc:
            error = str(exc)
            log.warning("sync cycle failed: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a daemon must survive and report any failure
            error = f"{type(exc).__name__}: {exc}"
            log.exception("sync cycle failed")
        result = CycleResult(
            time=to_iso(utcnow()) or "", started_at=to_iso(started) or "", full=bool(full),
            commit=commit, files_changed=outcome.files, tasks_changed=len(outcome.tasks),
            pushed=pushed, took_remote=took_remote, skipped=tuple(outcome.skipped), error=error,
            conflicts=tuple(self.git.conflicts),
        )
        try:
            self.store.sync_state.save(self.key, replace(new_state, last_cycle=result.to_dict()))
        except LobstoreError as exc:
            log.warning("could not record the sync cycle: %s", exc)
        if result.conflicts:
            log.warning("sync cycle: uncommitted vault edits the remote contradicts were kept as %s",
                        ", ".join(result.conflicts))
        if error is None:
            log.info("sync cycle: %s tasks, %s files changed, commit %s", result.tasks_changed,
                     result.files_changed, (commit or "none")[:12])
        return result

    def _full_due(self, state: SyncState, now: Any) -> bool:
        if state.last_event_id == 0 or state.last_full_at is None:
            return True
        if not (self.root / self.renderer.tasks_dir).is_dir():
            return True  # a fresh clone of the vault, or someone removed the folder
        return (now - state.last_full_at).total_seconds() >= self.full_every

    def _push(self) -> tuple[bool, bool, _Outcome]:
        """Push, rebasing on rejection with backoff. When the rebase conflicts, take the
        remote and render everything again on top of it (people's bodies from the remote
        are kept; the database wins for its own keys)."""
        extra = _Outcome()
        took_remote = False
        for attempt in range(self.push_attempts):
            try:
                return self.git.push(), took_remote, extra
            except PushRejectedError as exc:
                if attempt + 1 == self.push_attempts:
                    raise SyncError(f"{exc}; gave up after {self.push_attempts} attempts") from exc
                delay = self.backoff * 2**attempt
                log.info("%s; rebasing and retrying in %.1fs", exc, delay)
                self._sleep(delay)
                self.git.fetch()
                if not self.git.rebase_onto_remote():
                    self.git.take_remote()
                    took_remote = True
                    again = self._render(True, after=0, after_cost=0)
                    if again.paths:
                        self.git.commit(again.paths, self._commit_message(again))
                    extra.add(again)
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit_message(self, outcome: _Outcome) -> str:
        n = len(outcome.tasks)
        subject = self.message.format(tasks=f"{n} task{'' if n == 1 else 's'}", count=n, files=outcome.files)
        refs = sorted(outcome.tasks, key=lambda ref: (len(ref), ref))
        if not refs:
            return subject
        shown = " ".join(refs[:100]) + (f" and {len(refs) - 100} more" if len(refs) > 100 else "")
        return f"{subject}\n\nTasks: {shown}\n"

    # -- rendering ---------------------------------------------------------------------------
    def _render(self, full: bool, *, after: int, after_cost: int) -> _Outcome:
        index = task_files(self.root, self.renderer.tasks_dir, self.store.id_prefix)
        outcome = _Outcome()
        tasks = iter(self._all_tasks() if full else self._changed_tasks(after, after_cost))
        while batch := list(islice(tasks, COST_BATCH)):
            costs = self.store.costs.cost_by_task(task.id for task in batch)  # one query a batch
            for task in batch:
                outcome.add(self._render_task(task, index, costs[task.id]))
        outcome.add(self._render_pages())
        return outcome

    def _all_tasks(self) -> Iterator[Task]:
        last = None
        while True:
            page = self.store.tasks.list(limit=PAGE, after=last)
            yield from page
            if len(page) < PAGE:
                return
            last = page[-1].id

    def _changed_tasks(self, after: int, after_cost: int) -> Iterable[Task]:
        """Tasks with events after ``after``, and tasks whose cost grew after ``after_cost``.

        Where ids can commit out of order (PostgreSQL), a late commit can carry an id below the
        last cursor: the cycle looks back a window of ids too. Rendering an unchanged task
        writes nothing, so looking again costs a read, never a commit.
        """
        overlap = 0 if self.store.backend.commits_in_id_order else FEED_OVERLAP
        after, after_cost = max(0, after - overlap), max(0, after_cost - overlap)
        ids: set[int] = self.store.costs.tasks_costed_after(after_cost)
        while True:
            events = self.store.events.feed(after=after, limit=PAGE)
            ids.update(e.task_id for e in events if e.task_id is not None)  # feed events of no task render nothing
            if len(events) < PAGE:
                break
            after = events[-1].id
        if len(ids) > INCREMENTAL_LIMIT:
            return self._all_tasks()
        found = self.store.tasks.get_many(ids)  # one query: ids are at most INCREMENTAL_LIMIT
        return [found[task_id] for task_id in sorted(found)]

    def _render_task(self, task: Task, index: Mapping[str, list[str]], cost_micro: int) -> _Outcome:
        outcome = _Outcome()
        target = self.renderer.task_path(task)
        found = index.get(task.ref, [])
        if len(found) > 1:
            outcome.skipped += [f"{p}: {task.ref} has files in several folders ({', '.join(found)}); "
                                "merge them by hand" for p in found if p != target]
        # With several files, the one already in place is edited and the others are reported.
        source = target if target in found else (found[0] if found else None)
        try:
            existing = read_text(self.root / source) if source else None
            text = self.renderer.task_text(
                task, existing, self.extra_keys(task) if self.extra_keys else None, cost_micro=cost_micro)
        except (FrontmatterError, UnicodeDecodeError) as exc:
            outcome.skipped.append(f"{source}: {exc}")
            log.warning("left %s as it is: %s", source, exc)
            return outcome
        if source == target and text == existing:
            return outcome
        write_atomic(self.root / target, text)
        outcome.paths.add(target)
        if source and source != target:
            # A move: new path written, old removed; git records it as the rename `git mv` makes.
            (self.root / source).unlink()
            outcome.paths.add(source)
        outcome.files += 1
        outcome.tasks[task.ref] = None
        return outcome

    def _render_pages(self) -> _Outcome:
        data = self._vault_data()
        outcome = _Outcome()
        for page in self.pages:
            path = self.root / page.path
            try:
                existing = read_text(path) if path.exists() else None
                text = self.renderer.page_text(page.build(data, self.renderer), existing)
            except (FrontmatterError, UnicodeDecodeError) as exc:
                outcome.skipped.append(f"{page.path}: {exc}")
                continue
            if text != existing:
                write_atomic(path, text)
                outcome.paths.add(page.path)
                outcome.files += 1
        return outcome

    def _vault_data(self) -> VaultData:
        tasks = self.store.tasks
        by_status = tasks.count_by("status")
        active_total = by_status.get(st.ACTIVE, 0)
        completed = tasks.list(status=st.COMPLETED, order="desc", limit=OVERVIEW_ROWS)
        failed = tasks.list(status=[st.FAILED, st.CANCELLED], order="desc", limit=OVERVIEW_ROWS)
        return VaultData(
            by_status=by_status,
            by_type=tasks.count_by("type"),
            active=tasks.list(status=st.ACTIVE, limit=OVERVIEW_ROWS),
            active_more=max(0, active_total - OVERVIEW_ROWS),
            completed=sorted(completed, key=_ended, reverse=True),
            failed=sorted(failed, key=_ended, reverse=True),
            costs=self._cost_data(),
            audits=self._audit_data(),
        )

    def _cost_data(self) -> CostData | None:
        """The 30 days up to the day of the newest cost event: the page moves with the data,
        not with the clock, so a quiet database renders the same bytes."""
        costs = self.store.costs
        newest = costs.last_event_at()
        if newest is None:
            return None
        until = newest.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        since = until - timedelta(days=COST_DAYS)
        summary = costs.summary(since=since, until=until, group_by="model")
        by_day = costs.daily_by_model(since=since, until=until)
        return CostData(since=since, until=until, totals=summary.totals, by_model=summary.groups, by_day=by_day,
                        pruned_before=summary.pruned_before)

    def _audit_data(self) -> AuditData:
        """Open findings: counted by severity and type in the database, and the first
        ``AUDIT_ROWS`` of each severity listed (however many are open)."""
        audits = self.store.audits
        shown = {severity: findings for severity in SEVERITIES
                 if (findings := audits.list(status="open", severity=severity, limit=AUDIT_ROWS))}
        return AuditData(by_severity=audits.count_by("severity", status="open"),
                         by_type=audits.count_by("audit_type", status="open"), findings=shown)

    def close(self) -> None:
        self.git.close()


def _ended(task: Task) -> tuple[str, int]:
    return (to_iso(task.completed_at) or "", task.id)


