"""The job scheduler of `lobstore serve`: runs the jobs file's commands on their cron schedules.

It is a :class:`~lobstore.services.BackgroundService` whose pass is one *tick* (every second by
default, and at each slot): it checks that this process holds the ``jobs`` duty (one process
per database runs the schedule, see :mod:`lobstore.duties`), reads the jobs' state, and starts
what is due. Each run is a child process watched by a thread of its own
(:mod:`lobstore.cron.process`); its outcome goes into the job's state when it ends.

Every decision is a claim in the store (:meth:`JobRepository.claim_run`): a slot is run by the
process that moves the job's ``next_run`` past it, so even two processes that both believe
they lead (a PostgreSQL connection that dropped and came back) run a slot once. Database work
happens in short transactions of its own; a child process is never started inside one.

- A slot missed while no scheduler ran (a restart, a take-over) runs once when the scheduler
  finds it, if it is at most ``catch_up_window`` seconds old (upstream lobwife's 60 s misfire
  grace); several missed slots make one run; older ones are logged and passed by.
- ``forbid`` jobs (the default) skip a slot or trigger while their last run is alive; the skip
  is counted (``skip_count``, ``last_skipped_at``). ``allow`` jobs run side by side.
- A trigger (any replica's API) is left in the store and taken by the process that leads.
- :meth:`stop` stops scheduling, gives running jobs ``stop_grace`` seconds, then kills their
  process groups and records them ``interrupted``; then it releases the duty.

    scheduler = JobScheduler(store, load_jobs("jobs.toml"))
    scheduler.start()  # and store.set_job_runner(scheduler) for the API's triggers
    ...
    scheduler.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..clock import to_iso
from ..duties import Duty
from ..errors import JobRunningError, LobstoreError, StorageError
from ..models import JobState
from ..services import BackgroundService
from ..store import Store
from ..threads import background_thread
from .definitions import DEFAULT_CATCH_UP_WINDOW, DEFAULT_STOP_GRACE, JobDefinition, JobsFile
from .process import DRAIN, ChildRun, RunResult

log = logging.getLogger(__name__)

DUTY = "jobs"
DEFAULT_TICK = 1.0
RECORD_TRIES = 5  # a run's outcome is retried this often (a second apart) if the database fails
QUIET = 60.0  # s between two warnings that the database fails


def wall_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(eq=False)
class ActiveRun:
    job: JobDefinition
    started_at: datetime
    child: ChildRun
    reason: str  # "schedule", "catch-up" or "trigger"
    thread: threading.Thread | None = field(default=None, repr=False)


class JobScheduler(BackgroundService):
    """Runs the jobs of a jobs file; also the store's job runner (``store.set_job_runner``)."""

    name = "job scheduler"
    duty = DUTY

    def __init__(
        self,
        store: Store,
        jobs: JobsFile | Sequence[JobDefinition],
        *,
        duty: Duty | None = None,
        tick: float = DEFAULT_TICK,
        catch_up_window: float | None = None,
        stop_grace: float | None = None,
        now: Callable[[], datetime] = wall_now,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(interval=tick, duty=duty)
        if isinstance(jobs, JobsFile):
            definitions = jobs.jobs
            catch_up_window = jobs.catch_up_window if catch_up_window is None else catch_up_window
            stop_grace = jobs.stop_grace if stop_grace is None else stop_grace
        else:
            definitions = tuple(jobs)
        self.store = store
        self.jobs: dict[str, JobDefinition] = {job.name: job for job in definitions}
        self.catch_up_window = DEFAULT_CATCH_UP_WINDOW if catch_up_window is None else catch_up_window
        self.stop_grace = DEFAULT_STOP_GRACE if stop_grace is None else stop_grace
        self._now = now
        self._environ = os.environ if environ is None else environ
        self._runs_lock = threading.Condition()  # guards _active; notified when a run ends
        self._active: dict[str, list[ActiveRun]] = {}
        self._record_lock = threading.Lock()  # a claim and its bookkeeping, or an outcome, at a time
        self._accepting = True
        self._next_slot: datetime | None = None
        self._quiet_until = 0.0
        self._taken_over = False  # runs a gone process left marked in progress were recorded
        self.runs_started = 0

    # -- the store's job runner (lobstore.repositories.jobs.JobRunner) -----------------------
    def job_names(self) -> list[str]:
        return list(self.jobs)

    def next_slot(self, name: str) -> datetime | None:
        job = self.jobs.get(name)
        return None if job is None else job.schedule.next_after(self._now())

    def trigger_job(self, name: str) -> None:
        """Leave a trigger in the store for whichever process leads (this one: at once)."""
        job = self.jobs[name]
        if job.concurrency == "forbid" and (self._running_here(name) or self.store.jobs.get(name).running):
            # Upstream lobwife's words (its dashboard shows them).
            raise JobRunningError(f"Job {name} is already running", job=name)
        self.store.jobs.request_trigger(name, self._now())
        self.trigger()  # wake the loop

    # -- what others ask ---------------------------------------------------------------------
    @property
    def leading(self) -> bool:
        """Whether this process runs the schedule now (holds the ``jobs`` duty)."""
        return self.gate is not None and self.gate.holding

    def running_jobs(self) -> list[str]:
        """The jobs with a run in progress in this process (for /health's ``jobs_running``).
        ``store.jobs.running()`` answers for whichever process leads."""
        with self._runs_lock:
            return [name for name, runs in self._active.items() if runs]

    def describe(self) -> dict[str, Any]:
        return {
            "role": "leader" if self.leading else "standby",
            "jobs": self.job_names(),
            "jobs_running": self.running_jobs(),
            "next_slot": to_iso(self._next_slot) if self._next_slot else None,
            **(self.gate.duty.describe() if self.gate is not None else {}),
        }

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is in progress here; True if none is."""
        deadline = time.monotonic() + timeout
        with self._runs_lock:
            while any(self._active.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._runs_lock.wait(remaining)
        return True

    # -- the lifecycle -------------------------------------------------------------------------
    def on_start(self) -> None:
        self._accepting = True
        self.register_jobs()

    def register_jobs(self) -> dict[str, JobState]:
        """Make every job of the file known in the store (so the API lists it before its first
        run) with its definition; a job whose schedule changed is planned anew."""
        now = self._now()
        before = self.store.jobs.list()
        states = {}
        for job in self.jobs.values():
            state = self.store.jobs.register(
                job.name, description=job.description, schedule=job.schedule.expression,
                command=job.command_line, concurrency=job.concurrency, timeout=job.timeout, enabled=job.enabled,
            )
            old = before.get(job.name)
            following = job.schedule.next_after(now) if state.enabled else None
            if old is not None and old.schedule != job.schedule.expression and state.next_run is not None:
                if self.store.jobs.move_next_run(job.name, seen=state.next_run, next_run=following):
                    log.info("job %s: schedule changed from %r to %r; next run %s", job.name, old.schedule,
                             job.schedule.expression, to_iso(following))
            elif state.next_run is None and following is not None:
                self.store.jobs.move_next_run(job.name, seen=None, next_run=following)  # planned from now on
            states[job.name] = state
        log.info("jobs: %d defined (%s)", len(self.jobs), ", ".join(self.jobs))
        return states

    def stop(self, timeout: float | None = None) -> bool:
        """Stop scheduling; give running jobs ``stop_grace`` seconds; then kill their process
        groups (recorded ``interrupted``) and release the duty. True when all of it ended."""
        self._accepting = False
        ended = self.stop_thread(timeout)
        if not self.wait_idle(self.stop_grace):
            runs = self._all_runs()
            log.warning("stopping: %s still running after %g s; killing %s process group%s",
                        ", ".join(run.job.name for run in runs), self.stop_grace,
                        "its" if len(runs) == 1 else "their", "" if len(runs) == 1 else "s")
            for run in runs:
                run.child.interrupt(f"interrupted: lobstore serve stopped; the job's process group was killed "
                                    f"after the {self.stop_grace:g} s stop grace")
            ended = self.wait_idle(DRAIN + RECORD_TRIES + 1) and ended
        self.release_duty()
        return ended

    # -- one tick --------------------------------------------------------------------------------
    def on_duty_acquired(self) -> None:
        self._taken_over = False  # the first tick records what a gone leader left running

    def run_pass(self) -> str | None:
        try:
            if not self._taken_over:
                self._take_over()
                self._taken_over = True
            self._schedule()
        except StorageError as exc:
            # A database that is down fails every tick: say so once a minute, not every second.
            if self._clock() >= self._quiet_until:
                log.warning("the job schedule: the database failed (%s); trying again every %g s", exc, self.interval)
                self._quiet_until = self._clock() + QUIET
            return str(exc)
        return None

    def failed(self, result: str | None) -> str | None:
        return result

    def due_at(self, scheduled: float) -> float:
        """The next tick, or sooner when a slot comes first (a slot starts on time)."""
        slot = self._next_slot if self.leading else None
        if slot is None:
            return scheduled
        return min(scheduled, self._clock() + max(0.0, (slot - self._now()).total_seconds()))

    def _take_over(self) -> None:
        """Runs the store still shows in progress were started by a process that is gone."""
        note = ("interrupted: the process running it ended before the job did "
                "(recorded by the scheduler that took over)")
        with self._runs_lock:
            mine = {name for name, runs in self._active.items() if runs}
        for name in self.store.jobs.interrupt_unfinished(self._now(), note, keep=mine):
            log.warning("job %s: its run in progress belonged to a scheduler that is gone; recorded as interrupted", name)

    def _schedule(self) -> None:
        now = self._now()
        states = self.store.jobs.list()
        upcoming: list[datetime] = []
        for name, job in self.jobs.items():
            state = states.get(name)
            if state is None:  # removed behind our back: make it known again
                state = self.register_jobs()[name]
            if state.trigger_requested_at is not None:
                self._start(job, now, "trigger", trigger=state.trigger_requested_at)
            if not state.enabled:
                if state.next_run is not None:
                    self.store.jobs.move_next_run(name, seen=state.next_run, next_run=None)
                continue
            if state.next_run is None:
                following = job.schedule.next_after(now)
                self.store.jobs.move_next_run(name, seen=None, next_run=following)
                upcoming.append(following)
                continue
            if state.next_run > now:
                upcoming.append(state.next_run)
                continue
            slot = job.schedule.latest_at_or_before(now)
            following = job.schedule.next_after(now)
            upcoming.append(following)
            late = (now - slot).total_seconds()
            if late <= self.catch_up_window:
                reason = "schedule" if slot == state.next_run and late <= self.interval + 1 else "catch-up"
                if slot > state.next_run:
                    log.info("job %s: slots from %s to %s were missed; running once now", name,
                             to_iso(state.next_run), to_iso(slot))
                self._start(job, now, reason, slot=(state.next_run, following))
            elif self.store.jobs.move_next_run(name, seen=state.next_run, next_run=following):
                log.warning("job %s: the slot of %s was missed by %.0f s, more than the catch-up window of %g s; "
                            "not run (next run %s)", name, to_iso(slot), late, self.catch_up_window, to_iso(following))
        self._next_slot = min(upcoming) if upcoming else None

    def _start(self, job: JobDefinition, now: datetime, reason: str, *,
               slot: tuple[datetime | None, datetime] | None = None, trigger: datetime | None = None) -> None:
        if not self._accepting:
            return
        with self._record_lock:
            if job.concurrency == "forbid" and self._running_here(job.name):
                if self.store.jobs.skip_run(job.name, at=now, slot=slot, trigger=trigger):
                    log.warning("job %s: %s skipped, its previous run is still going (concurrency forbid)",
                                job.name, "trigger" if trigger else "slot")
                return
            env = {**self._environ, **job.env, "LOBSTORE_JOB": job.name}
            run = ActiveRun(job, now, ChildRun(job.argv, env=env, cwd=job.working_dir, timeout=job.timeout), reason)
            if not self.store.jobs.claim_run(job.name, started_at=now, slot=slot, trigger=trigger):
                return  # another process took it, or it was disabled meanwhile
            with self._runs_lock:
                self._active.setdefault(job.name, []).append(run)
        self.runs_started += 1
        log.info("job %s: starting (%s): %s", job.name, reason, job.command_line)
        run.thread = background_thread(self._execute, args=(run,), name=f"lobstore-job-{job.name}")
        run.thread.start()

    def _execute(self, run: ActiveRun) -> None:
        try:
            result = run.child.run()
        except Exception as exc:  # noqa: BLE001 - a bug here must still end the run's record
            log.exception("job %s: the run failed unexpectedly", run.job.name)
            result = RunResult("error", None, 0.0, f"lobstore could not run the job: {type(exc).__name__}: {exc}")
        log.log(logging.INFO if result.status == "success" else logging.WARNING,
                "job %s: %s after %.1f s (exit code %s)", run.job.name, result.status, result.duration, result.exit_code)
        try:
            self._record(run, result)
        finally:
            with self._runs_lock:
                self._active[run.job.name].remove(run)
                self._runs_lock.notify_all()

    def _record(self, run: ActiveRun, result: RunResult) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                with self._record_lock:
                    with self._runs_lock:
                        others = [r.started_at for r in self._active.get(run.job.name, []) if r is not run]
                    self.store.jobs.finish_run(
                        run.job.name, status=result.status, duration=result.duration, output=result.output,
                        earlier_lines=result.earlier_lines, exit_code=result.exit_code,
                        still_running_since=min(others) if others else None,
                    )
                return
            except LobstoreError as exc:
                if attempt == RECORD_TRIES:
                    log.error("job %s: could not record its %s run: %s", run.job.name, result.status, exc)
                    return
                time.sleep(1.0)

    def _running_here(self, name: str) -> bool:
        with self._runs_lock:
            return bool(self._active.get(name))

    def _all_runs(self) -> list[ActiveRun]:
        with self._runs_lock:
            return [run for runs in self._active.values() for run in runs]
