"""lobwife's cron jobs: their state (was jobs.json), and the hook that lets the API run one now.

A job is known once its runner registers it (:meth:`JobRepository.register`) or records its
first run. The scheduler itself lives in the embedding daemon; it attaches a :class:`JobRunner`
to the store (``store.set_job_runner(runner)``) so ``POST /api/jobs/{name}/trigger`` can start a
job.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

from ..clock import utcnow
from ..errors import NoJobRunnerError, NotFoundError
from ..models import JobState
from ..schema import job_state
from ..validation import boolean, choice, clean_fields, integer, text, timestamp
from .base import Repository

log = logging.getLogger(__name__)

RUN_STATUSES = ("success", "failed", "timeout", "error")
MAX_OUTPUT_LINES = 200
# Lines can be arbitrarily long: the kept tail is bounded in characters too.
MAX_OUTPUT_CHARS = 64 * 1024
MAX_DURATION = 366 * 86400.0
_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@runtime_checkable
class JobRunner(Protocol):
    """What the embedding daemon's scheduler offers the API."""

    def trigger(self, name: str) -> None:
        """Start job ``name`` now, without waiting for it to finish. Raise JobRunningError if it
        is already running and NotFoundError if the runner has no such job."""
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


def output_tail(value: Any) -> str | None:
    """The last 200 lines (and at most 64 KiB) of a run's output, marked when cut."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    # PostgreSQL text cannot hold NUL; a run's record is worth more than one odd byte.
    value = value.replace("\x00", "\ufffd")
    lines = value.splitlines()
    dropped = max(0, len(lines) - MAX_OUTPUT_LINES)
    tail = "\n".join(lines[dropped:])
    if len(tail) > MAX_OUTPUT_CHARS:
        tail = tail[-MAX_OUTPUT_CHARS:]
        cut = tail.find("\n")
        if cut != -1:  # start at a line boundary
            tail = tail[cut + 1:]
        dropped = len(lines) - len(tail.splitlines())
    if dropped:
        return f"[… {dropped} earlier line{'s' if dropped != 1 else ''} truncated …]\n{tail}"
    return tail


RUN_CLEANERS = {
    "status": choice(RUN_STATUSES),
    "duration": seconds,
    "output": output_tail,
    "finished_at": timestamp,
}
REGISTER_CLEANERS = {"description": text(1000), "schedule": text(200)}
# The whole jobs.json entry, for the importer.
STATE_CLEANERS = {
    **REGISTER_CLEANERS,
    "enabled": boolean,
    "last_run": timestamp,
    "last_status": lambda v: None if v is None else choice(RUN_STATUSES)(v),
    "last_duration": seconds,
    "last_output": output_tail,
    "run_count": integer(0, 2**31 - 1, optional=False),
    "fail_count": integer(0, 2**31 - 1, optional=False),
}

# Built once, values bound per call.
_JOB = sa.select(job_state).where(job_state.c.name == sa.bindparam("job_name"))
_ALL_JOBS = sa.select(job_state).order_by(job_state.c.name)
_INSERT_JOB = sa.insert(job_state)
_UPDATE_JOB = sa.update(job_state).where(job_state.c.name == sa.bindparam("match_name"))
_RECORD_RUN = (
    sa.update(job_state)
    .where(job_state.c.name == sa.bindparam("match_name"))
    .values(
        run_count=job_state.c.run_count + 1,
        fail_count=job_state.c.fail_count + sa.bindparam("failed", type_=sa.Integer),
    )
)
_NEW_JOB = {
    "description": None, "schedule": None, "enabled": True, "last_run": None, "last_status": None,
    "last_duration": None, "last_output": None, "run_count": 0, "fail_count": 0,
}


def job_from_row(row: sa.Row) -> JobState:
    values = row._asdict()
    values["enabled"] = bool(values["enabled"])
    return JobState(**values)


def insert_job(conn: sa.Connection, name: str, values: dict[str, Any]) -> None:
    conn.execute(_INSERT_JOB, {**_NEW_JOB, **values, "name": name})


def make_job_if_absent(conn: sa.Connection, backend: Any, name: str, values: dict[str, Any]) -> bool:
    """Make job ``name`` known unless it is; True if this call made it."""
    return backend.insert_if_absent(conn, job_state, {**_NEW_JOB, **values, "name": name})


class JobRepository(Repository):
    def register(self, name: str, *, description: str | None = None, schedule: str | None = None) -> JobState:
        """Make a job known (its runner does this at start). Given fields replace the stored
        ones; its counts and enabled flag are kept."""
        name = _name(name)
        values = {
            key: value
            for key, value in clean_fields(
                {"description": description, "schedule": schedule}, REGISTER_CLEANERS, "a job"
            ).items()
            if value is not None
        }
        with self._scope.writing() as conn:
            if not make_job_if_absent(conn, self._ctx.backend, name, values) and values:
                conn.execute(_UPDATE_JOB, {"match_name": name, **values})
            return job_from_row(conn.execute(_JOB, {"job_name": name}).one())

    def record_run(
        self,
        name: str,
        *,
        status: str,
        duration: float | None = None,
        output: str | None = None,
        finished_at: datetime | str | None = None,
    ) -> JobState:
        """Record a finished run (success, failed, timeout or error): ``run_count`` goes up by
        one, ``fail_count`` too unless it succeeded, and ``last_output`` keeps the output's last
        200 lines. A run of a job not yet known makes it known."""
        name = _name(name)
        values = clean_fields(
            {"status": status, "duration": duration, "output": output, "finished_at": finished_at},
            RUN_CLEANERS, "a job run",
        )
        last = {
            "last_run": values["finished_at"] or utcnow(),
            "last_status": values["status"],
            "last_duration": values["duration"],
            "last_output": values["output"],
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

    def enable(self, name: str) -> JobState:
        return self._set_enabled(name, True)

    def disable(self, name: str) -> JobState:
        """The runner should skip a disabled job's scheduled runs."""
        return self._set_enabled(name, False)

    def get(self, name: str) -> JobState:
        name = _name(name)
        with self._scope.reading() as conn:
            row = conn.execute(_JOB, {"job_name": name}).first()
        if row is None:
            raise NotFoundError(f"no job {name!r}: a job is known once its runner registers it or records a run",
                                job=name)
        return job_from_row(row)

    def list(self) -> dict[str, JobState]:
        """Every job, keyed by name in name order (the jobs.json shape once ``to_dict``-ed)."""
        with self._scope.reading() as conn:
            return {row.name: job_from_row(row) for row in conn.execute(_ALL_JOBS)}

    def trigger(self, name: str) -> None:
        """Ask the attached runner to run the job now. NoJobRunnerError (503) without a runner;
        the runner's JobRunningError (409) or NotFoundError (404) pass through."""
        name = _name(name)
        runner = self._ctx.attachments.job_runner
        if runner is None:
            raise NoJobRunnerError(
                "no job runner is attached to this store, so jobs cannot be triggered here: "
                "trigger it where lobwife's scheduler runs", job=name,
            )
        runner.trigger(name)
        log.info("job %s triggered", name)

    def import_state(self, name: str, state: dict[str, Any]) -> bool:
        """Store a job's state as it was (an already-validated jobs.json entry) unless the job is
        already known: returns False then and writes nothing (imports are idempotent, and the
        store's own newer state wins)."""
        with self._scope.writing() as conn:
            if conn.execute(_JOB, {"job_name": name}).first() is not None:
                return False
            insert_job(conn, name, state)
            return True

    def _set_enabled(self, name: str, enabled: bool) -> JobState:
        name = _name(name)
        with self._scope.writing() as conn:
            if conn.execute(_UPDATE_JOB, {"match_name": name, "enabled": enabled}).rowcount != 1:
                raise NotFoundError(f"no job {name!r}", job=name)
            return job_from_row(conn.execute(_JOB, {"job_name": name}).one())


def _name(name: Any) -> str:
    return clean_fields({"name": name}, {"name": job_name}, "a job")["name"]
