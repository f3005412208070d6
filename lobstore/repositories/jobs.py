"""lobwife's cron jobs: their state (was jobs.json), and what the scheduler records as it runs
them.

A job is known once a scheduler registers it from its jobs file (:meth:`JobRepository.register`,
see :mod:`lobstore.cron`) or an outside runner records its first run (:meth:`record_run`). The
scheduler is attached to the store as a :class:`JobRunner` (``store.set_job_runner``), so
``POST /api/jobs/{name}/trigger`` and enabling a job reach it.

How the scheduler keeps state here, so that every replica's API answers alike and one slot
runs once however many processes look at it:

- ``next_run`` is the next planned slot. A run of a slot is *claimed* by moving ``next_run``
  from the slot the scheduler saw to the one after it, in the same statement that counts the
  run (:meth:`claim_run`): a second process that saw the same slot changes no row and runs
  nothing. A restart finds a past ``next_run`` and knows a slot was missed.
- ``trigger_requested_at`` is a trigger waiting for the process that runs the schedule (it may
  be another replica); claiming the run clears it the same way.
- ``running_since`` is the start of the run in progress; a run is counted when it starts (as
  upstream lobwife did) and its outcome recorded when it ends (:meth:`finish_run`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

from ..clock import utcnow
from ..errors import NoJobRunnerError, NotFoundError
from ..models import JobState
from ..schema import job_state
from ..validation import boolean, choice, clean_fields, field, integer, is_unicode, nullable, text, timestamp
from .base import Repository

log = logging.getLogger(__name__)

RUN_STATUSES = ("success", "failed", "timeout", "error", "interrupted")
CONCURRENCY = ("forbid", "allow")
MAX_OUTPUT_LINES = 200
# Lines can be arbitrarily long: the kept tail is bounded in characters too.
MAX_OUTPUT_CHARS = 64 * 1024
MAX_DURATION = 366 * 86400.0
_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@runtime_checkable
class JobRunner(Protocol):
    """What a scheduler (lobstore.cron.JobScheduler) offers the store and its API."""

    def job_names(self) -> list[str]:
        """The jobs it runs, in the order of its jobs file."""
        ...

    def trigger_job(self, name: str) -> None:
        """Run one of its jobs now, without waiting for the run. Raise JobRunningError if a
        ``forbid`` job is already running."""
        ...

    def next_slot(self, name: str) -> datetime | None:
        """When one of its jobs would next run if enabled now (None: not one of its jobs)."""
        ...


def job_name(value: Any) -> str:
    if not isinstance(value, str) or not _JOB_NAME_RE.match(value):
        raise ValueError(
            f"must be a job name of letters, digits, '-', '_' or '.' (1-100, starting with a "
            f"letter or digit), got {value!r}"
        )
    return value


def seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_DURATION:
        raise ValueError(f"must be between 0 and {MAX_DURATION:.0f} seconds, got {value}")
    return float(value)


def output_tail(value: Any, *, earlier_lines: int = 0) -> str | None:
    """The last 200 lines (and at most 64 KiB) of a run's output, marked when cut.
    ``earlier_lines``: lines the caller already dropped before ``value`` (counted in the mark)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    # PostgreSQL text cannot hold NUL, no database a lone surrogate (JSON "\ud800"); a run's
    # record is worth more than one odd character.
    value = value.replace("\x00", "\ufffd")
    if not is_unicode(value):
        value = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    lines = value.splitlines()
    dropped = max(0, len(lines) - MAX_OUTPUT_LINES)
    tail = "\n".join(lines[dropped:])
    if len(tail) > MAX_OUTPUT_CHARS:
        tail = tail[-MAX_OUTPUT_CHARS:]
        cut = tail.find("\n")
        if cut != -1:  # start at a line boundary
            tail = tail[cut + 1:]
        dropped = len(lines) - len(tail.splitlines())
    dropped += earlier_lines
    if dropped:
        return f"[… {dropped} earlier line{'s' if dropped != 1 else ''} truncated …]\n{tail}"
    return tail


SECONDS = field(seconds, {"type": "number", "minimum": 0, "maximum": MAX_DURATION, "nullable": True})
OUTPUT = field(output_tail, {"type": "string", "nullable": True})
RUN_CLEANERS = {
    "status": choice(RUN_STATUSES).require(),
    "duration": SECONDS.doc("how long it ran, in seconds"),
    "output": OUTPUT.doc(f"what it printed (the last {MAX_OUTPUT_LINES} lines are kept)"),
    "started_at": timestamp.doc("when it started (the job's last_run)"),
    "finished_at": timestamp.doc("when it ended (default now)"),
    "exit_code": integer(-255, 255).doc("the process's exit code"),
}
REGISTER_CLEANERS = {
    "description": text(1000),
    "schedule": text(200).doc("its cron schedule"),
    "command": text(10_000),
    "concurrency": nullable(choice(CONCURRENCY)),
    "timeout": SECONDS.doc("seconds before a run is killed"),
    "enabled": nullable(boolean).doc("for a job not yet known only"),
}
# The whole jobs.json entry, for the importer.
STATE_CLEANERS = {
    "description": REGISTER_CLEANERS["description"],
    "schedule": REGISTER_CLEANERS["schedule"],
    "enabled": boolean,
    "last_run": timestamp,
    "last_status": nullable(choice(RUN_STATUSES)),
    "last_duration": SECONDS,
    "last_output": OUTPUT,
    "run_count": integer(0, 2**31 - 1, optional=False),
    "fail_count": integer(0, 2**31 - 1, optional=False),
}

# Built once, values bound per call.
_NAME = job_state.c.name == sa.bindparam("match_name")
_JOB = sa.select(job_state).where(job_state.c.name == sa.bindparam("job_name"))
_ALL_JOBS = sa.select(job_state).order_by(job_state.c.name)
_RUNNING = sa.select(job_state.c.name).where(job_state.c.running_since.is_not(None)).order_by(job_state.c.name)
_UNFINISHED = sa.select(job_state.c.name, job_state.c.running_since).where(job_state.c.running_since.is_not(None))
_UPDATE_JOB = sa.update(job_state).where(_NAME)
_FAILED = sa.bindparam("failed", type_=sa.Integer)
_RECORD_RUN = _UPDATE_JOB.values(run_count=job_state.c.run_count + 1, fail_count=job_state.c.fail_count + _FAILED)
_FINISH_RUN = _UPDATE_JOB.values(fail_count=job_state.c.fail_count + _FAILED)
_ENABLE = _UPDATE_JOB.values(
    enabled=True, next_run=sa.func.coalesce(job_state.c.next_run, sa.bindparam("slot", type_=job_state.c.next_run.type)),
)
_DISABLE = _UPDATE_JOB.values(enabled=False, next_run=None)
_REQUEST_TRIGGER = _UPDATE_JOB.values(
    trigger_requested_at=sa.bindparam("at", type_=job_state.c.trigger_requested_at.type))
# Claims: the row changes only if what the scheduler saw is still there (see the module doc).
_SLOT_SEEN = job_state.c.next_run.is_not_distinct_from(sa.bindparam("seen", type_=job_state.c.next_run.type))
_TRIGGER_SEEN = job_state.c.trigger_requested_at == sa.bindparam("seen", type_=job_state.c.trigger_requested_at.type)
_START = {
    "run_count": job_state.c.run_count + 1,
    "last_run": sa.bindparam("started_at", type_=job_state.c.last_run.type),
    "running_since": sa.func.coalesce(
        job_state.c.running_since, sa.bindparam("started_at", type_=job_state.c.running_since.type)),
}
_SKIP = {
    "skip_count": job_state.c.skip_count + 1,
    "last_skipped_at": sa.bindparam("at", type_=job_state.c.last_skipped_at.type),
}
_NEXT = sa.bindparam("next_run", type_=job_state.c.next_run.type)
_CLAIM_SLOT = _UPDATE_JOB.where(job_state.c.enabled, _SLOT_SEEN).values(next_run=_NEXT, **_START)
_CLAIM_TRIGGER = _UPDATE_JOB.where(_TRIGGER_SEEN).values(trigger_requested_at=None, **_START)
_SKIP_SLOT = _UPDATE_JOB.where(job_state.c.enabled, _SLOT_SEEN).values(next_run=_NEXT, **_SKIP)
_SKIP_TRIGGER = _UPDATE_JOB.where(_TRIGGER_SEEN).values(trigger_requested_at=None, **_SKIP)
_MOVE_SLOT = _UPDATE_JOB.where(_SLOT_SEEN).values(next_run=_NEXT)
_NEW_JOB = {
    "description": None, "schedule": None, "enabled": True, "last_run": None, "last_status": None,
    "last_duration": None, "last_output": None, "run_count": 0, "fail_count": 0, "command": None,
    "concurrency": None, "timeout": None, "last_exit_code": None, "skip_count": 0, "last_skipped_at": None,
    "next_run": None, "running_since": None, "trigger_requested_at": None,
}


def job_from_row(row: sa.Row) -> JobState:
    values = row._asdict()
    values["enabled"] = bool(values["enabled"])
    return JobState(**values)


def insert_job(conn: sa.Connection, name: str, values: dict[str, Any]) -> None:
    conn.execute(sa.insert(job_state), {**_NEW_JOB, **values, "name": name})


def make_job_if_absent(conn: sa.Connection, backend: Any, name: str, values: dict[str, Any]) -> bool:
    """Make job ``name`` known unless it is; True if this call made it."""
    return backend.insert_if_absent(conn, job_state, {**_NEW_JOB, **values, "name": name})


def unknown_job(name: str) -> NotFoundError:
    # Upstream lobwife's words, which its dashboard shows.
    return NotFoundError(f"Unknown job: {name}", job=name)


class JobRepository(Repository):
    # -- what a scheduler or an outside runner records ---------------------------------------
    def register(self, name: str, /, **fields: Any) -> JobState:
        """Make a job known (its runner does this at start). Fields (:data:`REGISTER_CLEANERS`):
        description, schedule, command, concurrency, timeout, enabled. Given fields replace the
        stored ones; its counts are kept, and ``enabled`` applies only to a job not yet known
        (after that, enabling and disabling it is what counts)."""
        name = _name(name)
        values = {
            key: value for key, value in clean_fields(fields, REGISTER_CLEANERS, "a job").items() if value is not None
        }
        initial = values.pop("enabled", None)
        with self._scope.writing() as conn:
            made = make_job_if_absent(conn, self._ctx.backend, name,
                                      {**values, **({} if initial is None else {"enabled": initial})})
            if not made and values:
                conn.execute(_UPDATE_JOB, {"match_name": name, **values})
            return job_from_row(conn.execute(_JOB, {"job_name": name}).one())

    def record_run(self, name: str, /, **fields: Any) -> JobState:
        """Record a run that an outside runner finished. Fields (:data:`RUN_CLEANERS`): status
        (required: success, failed, timeout, error or interrupted), duration, output,
        started_at, finished_at, exit_code. ``run_count`` goes up by one, ``fail_count`` too
        unless it succeeded, and ``last_output`` keeps the output's last 200 lines.
        ``last_run`` is ``started_at``, else ``finished_at``, else now. A run of a job not yet
        known makes it known."""
        name = _name(name)
        values = dict.fromkeys(RUN_CLEANERS) | clean_fields(fields, RUN_CLEANERS, "a job run")
        last = {
            "last_run": values["started_at"] or values["finished_at"] or utcnow(),
            "last_status": values["status"],
            "last_duration": values["duration"],
            "last_output": values["output"],
            "last_exit_code": values["exit_code"],
        }
        failed = int(values["status"] != "success")
        with self._scope.writing() as conn:
            # A new job is made first (two first runs at once: one makes it, both count).
            make_job_if_absent(conn, self._ctx.backend, name, {})
            conn.execute(_RECORD_RUN, {"match_name": name, "failed": failed, **last})
            job = job_from_row(conn.execute(_JOB, {"job_name": name}).one())
        log.info("job %s: %s run recorded (%d runs, %d failed)", name, values["status"], job.run_count, job.fail_count)
        self._ctx.attachments.observer.job_run(name, values["status"])
        return job

    # -- what people do --------------------------------------------------------------------------
    def enable(self, name: str) -> JobState:
        """Enable a job; a job of the attached scheduler is scheduled at once (its next slot)."""
        name = _name(name)
        runner = self._ctx.attachments.job_runner
        slot = runner.next_slot(name) if runner is not None else None
        return self._change(name, _ENABLE, {"slot": slot})

    def disable(self, name: str) -> JobState:
        """Disable a job: no slot runs until it is enabled again (a trigger still does, as
        upstream; a run in progress goes on)."""
        return self._change(_name(name), _DISABLE, {})

    def trigger(self, name: str) -> None:
        """Ask the attached scheduler to run the job now. Unknown: NotFoundError (404); known
        here but not run by this server's scheduler: NoJobRunnerError (503); already running
        under ``forbid``: the scheduler's JobRunningError (409)."""
        name = _name(name)
        runner = self._ctx.attachments.job_runner
        if runner is not None and name in runner.job_names():
            runner.trigger_job(name)
            log.info("job %s triggered", name)
            return
        with self._scope.reading() as conn:
            if conn.execute(_JOB, {"job_name": name}).first() is None:
                raise unknown_job(name)
        if runner is None:
            raise NoJobRunnerError(
                f"no job runner is attached to this store, so job {name} cannot be triggered here: "
                "start `lobstore serve` with --jobs FILE, or trigger it where its runner runs", job=name,
            )
        raise NoJobRunnerError(
            f"job {name} is not in this server's jobs file (it is recorded by an outside runner), "
            "so it cannot be triggered here", job=name,
        )

    # -- reading -----------------------------------------------------------------------------
    def get(self, name: str) -> JobState:
        name = _name(name)
        with self._scope.reading() as conn:
            row = conn.execute(_JOB, {"job_name": name}).first()
        if row is None:
            raise unknown_job(name)
        return job_from_row(row)

    def list(self) -> dict[str, JobState]:
        """Every job keyed by name: the attached scheduler's in the order of its jobs file,
        then the others by name."""
        with self._scope.reading() as conn:
            jobs = {row.name: job_from_row(row) for row in conn.execute(_ALL_JOBS)}
        runner = self._ctx.attachments.job_runner
        if runner is None:
            return jobs
        first = {name: jobs.pop(name) for name in runner.job_names() if name in jobs}
        return {**first, **jobs}

    def running(self) -> list[str]:
        """The jobs with a run in progress (in whichever process runs the schedule)."""
        with self._scope.reading() as conn:
            return list(conn.execute(_RUNNING).scalars())

    # -- what the scheduler records as it runs jobs ------------------------------------------
    def request_trigger(self, name: str, at: datetime) -> None:
        """Leave a trigger for the process that runs the schedule (this one or another)."""
        self._change(_name(name), _REQUEST_TRIGGER, {"at": at})

    def claim_run(
        self,
        name: str,
        *,
        started_at: datetime,
        slot: tuple[datetime | None, datetime] | None = None,
        trigger: datetime | None = None,
    ) -> bool:
        """Count a run starting now, if it is still this caller's to start: for a ``slot``
        ``(seen, next)`` the job must be enabled and its ``next_run`` still ``seen`` (it moves
        to ``next``); for a ``trigger`` the trigger seen must still be waiting (it is cleared).
        False: another process took it, or it was disabled meanwhile; nothing changed."""
        return self._claim(name, slot, trigger, _CLAIM_SLOT, _CLAIM_TRIGGER, {"started_at": started_at})

    def skip_run(
        self,
        name: str,
        *,
        at: datetime,
        slot: tuple[datetime | None, datetime] | None = None,
        trigger: datetime | None = None,
    ) -> bool:
        """Record a slot or trigger skipped because the job was still running (``skip_count``,
        ``last_skipped_at``), claimed like :meth:`claim_run`."""
        return self._claim(name, slot, trigger, _SKIP_SLOT, _SKIP_TRIGGER, {"at": at})

    def move_next_run(self, name: str, *, seen: datetime | None, next_run: datetime | None) -> bool:
        """Plan the next slot, if ``next_run`` is still ``seen`` (a missed slot passed by, a
        job newly scheduled or a schedule changed)."""
        with self._scope.writing() as conn:
            return conn.execute(_MOVE_SLOT, {"match_name": name, "seen": seen, "next_run": next_run}).rowcount == 1

    def finish_run(
        self,
        name: str,
        *,
        status: str,
        duration: float,
        output: str | None,
        exit_code: int | None,
        earlier_lines: int = 0,
        still_running_since: datetime | None = None,
    ) -> JobState:
        """Record how a run the scheduler started ended. ``output`` is the end of its output,
        after ``earlier_lines`` lines the caller did not keep (see :func:`output_tail`).
        ``still_running_since``: the start of another run of the job still in progress
        (``allow``), else None."""
        values = clean_fields({"status": status, "duration": duration, "exit_code": exit_code},
                              RUN_CLEANERS, "a job run")
        values["output"] = output_tail(output, earlier_lines=earlier_lines)
        with self._scope.writing() as conn:
            conn.execute(_FINISH_RUN, {
                "match_name": name, "failed": int(values["status"] != "success"),
                "last_status": values["status"], "last_duration": round(values["duration"], 3),
                "last_output": values["output"], "last_exit_code": values["exit_code"],
                "running_since": still_running_since,
            })
            job = job_from_row(conn.execute(_JOB, {"job_name": name}).one())
        self._ctx.attachments.observer.job_run(name, values["status"])
        return job

    def interrupt_unfinished(self, at: datetime, note: str, *, keep: Collection[str] = ()) -> list[str]:
        """Record every run still marked in progress as ``interrupted`` (a failure), but those
        of the jobs in ``keep``: called by a scheduler that just took over, when the process
        that started those runs is gone."""
        with self._scope.writing() as conn:
            rows = [(name, since) for name, since in conn.execute(_UNFINISHED) if name not in keep]
            for name, since in rows:
                conn.execute(_FINISH_RUN, {
                    "match_name": name, "failed": 1, "last_status": "interrupted",
                    "last_duration": max(0.0, (at - since).total_seconds()), "last_output": note,
                    "last_exit_code": None, "running_since": None,
                })
        for name, _ in rows:
            self._ctx.attachments.observer.job_run(name, "interrupted")
        return [name for name, _ in rows]

    # -- the importer --------------------------------------------------------------------------
    def import_state(self, name: str, state: dict[str, Any]) -> bool:
        """Store a job's state as it was (an already-validated jobs.json entry) unless the job is
        already known: returns False then and writes nothing (imports are idempotent, and the
        store's own newer state wins)."""
        with self._scope.writing() as conn:
            if conn.execute(_JOB, {"job_name": name}).first() is not None:
                return False
            insert_job(conn, name, state)
            return True

    # -- helpers -------------------------------------------------------------------------------
    def _change(self, name: str, statement: Any, values: dict[str, Any]) -> JobState:
        with self._scope.writing() as conn:
            if conn.execute(statement, {"match_name": name, **values}).rowcount != 1:
                raise unknown_job(name)
            return job_from_row(conn.execute(_JOB, {"job_name": name}).one())

    def _claim(self, name: str, slot: tuple[datetime | None, datetime] | None, trigger: datetime | None,
               by_slot: Any, by_trigger: Any, values: dict[str, Any]) -> bool:
        if (slot is None) == (trigger is None):
            raise ValueError("claim either a slot or a trigger")
        with self._scope.writing() as conn:
            if slot is not None:
                seen, following = slot
                result = conn.execute(by_slot, {"match_name": name, "seen": seen, "next_run": following, **values})
            else:
                result = conn.execute(by_trigger, {"match_name": name, "seen": trigger, **values})
            return result.rowcount == 1


def _name(name: Any) -> str:
    return clean_fields({"name": name}, {"name": job_name}, "a job")["name"]
