"""UTC timestamps in one format.

Everything lobstore stores or prints is a timezone-aware UTC datetime at whole-second
precision, written as ISO 8601 with ``T`` and ``Z`` (``2026-02-16T12:00:00Z``): the form
Dataview reads as a date and the one every client sees. Ordering within a second comes
from ids, never from timestamps.
"""

from __future__ import annotations

from datetime import date, datetime, timezone



def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def normalize(value: datetime) -> datetime:
    """An aware UTC datetime at second precision; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(microsecond=0)


# Timestamps a fleet can mean. Outside this range date arithmetic (a month before, the next
# hour) would overflow, and strftime does not zero-pad years below 1000 everywhere.
MIN_YEAR, MAX_YEAR = 1900, 9998


def to_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # Values read from the store are already aware UTC at whole seconds: no need to convert,
    # and isoformat (in C) writes the same digits: "2026-02-16T12:00:00+00:00".
    v = value if value.tzinfo is timezone.utc and not value.microsecond else normalize(value)
    return v.isoformat()[:19] + "Z"


def parse_timestamp(value: object) -> datetime:
    """Accept a datetime, a date (midnight UTC) or an ISO 8601 string from the years
    1900-9998; raise ValueError otherwise."""
    parsed = _parse(value)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(f"{value!r} is out of range: timestamps go from {MIN_YEAR} to {MAX_YEAR}")
    return parsed


def _parse(value: object) -> datetime:
    if isinstance(value, datetime):
        return normalize(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return normalize(datetime.fromisoformat(text))
        except (ValueError, OverflowError):  # OverflowError: e.g. year 1 with a +01:00 offset
            pass
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp (e.g. 2026-02-16T12:00:00Z)")
    raise ValueError(f"expected an ISO 8601 timestamp string, got {type(value).__name__}")
