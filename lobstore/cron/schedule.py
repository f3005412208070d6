"""5-field cron expressions, in UTC, through croniter.

croniter (maintained under pallets-eco) is the small, well-kept choice for this: the scheduler
only needs "the next slot after t" and "the latest slot at or before t". APScheduler, which
upstream lobwife used, would bring a scheduler, executors and job stores of its own — none of
which could share lobstore's state, claims and duty lock — to get the same two answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ..errors import ConfigurationError

INSTALL_HINT = "pip install 'lobstore[jobs]'"
FIELDS = "minute hour day-of-month month day-of-week"
_TINY = timedelta(microseconds=1)


class CronSchedule:
    """One cron expression, checked once; times are aware UTC datetimes."""

    def __init__(self, expression: str) -> None:
        try:
            from croniter import CroniterError, croniter
        except ImportError:
            raise ConfigurationError(f"cron schedules need croniter: {INSTALL_HINT}") from None

        if not isinstance(expression, str):
            raise ValueError(f"must be a cron expression string, not {type(expression).__name__}")
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(
                f"must be a 5-field cron expression ({FIELDS}, in UTC), e.g. '*/5 * * * *'; "
                f"got {len(parts)} field{'s' if len(parts) != 1 else ''} in {expression!r}"
            )
        self.expression = " ".join(parts)
        self._croniter = croniter
        try:
            croniter(self.expression, datetime(2000, 1, 1, tzinfo=timezone.utc))
            # An expression that parses may still never fire (30 February).
            self.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc))
        except (CroniterError, ValueError, KeyError) as exc:
            reason = "it never matches a date" if type(exc).__name__ == "CroniterBadDateError" else str(exc)
            raise ValueError(f"{expression!r} is not a valid cron expression: {reason}") from None

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after ``moment``."""
        return self._croniter(self.expression, _utc(moment)).get_next(datetime)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last slot at or before ``moment``."""
        return self._croniter(self.expression, _utc(moment) + _TINY).get_prev(datetime)

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r})"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
