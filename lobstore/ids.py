"""Task references: ``T42``, ``t42`` and ``42`` name task 42; anything else is a legacy id.

The prefix is per store (``T`` by default; a dev store may use ``D``) so that refs from two
environments cannot be confused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigurationError, NotFoundError
from .validation import is_unicode

DEFAULT_PREFIX = "T"
_PREFIX_RE = re.compile(r"[A-Z]{1,4}")
MAX_TASK_ID = 2**63 - 1


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(
            f"task id prefix must be 1 to 4 capital letters (like 'T' or 'D'), got {prefix!r}"
        )
    return prefix


def format_ref(task_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}{task_id}"


@dataclass(frozen=True)
class TaskRef:
    """A parsed reference: exactly one of ``id`` and ``legacy_id`` is set."""

    id: int | None = None
    legacy_id: str | None = None

    def __str__(self) -> str:
        return str(self.id) if self.id is not None else str(self.legacy_id)


def parse_ref(value: object, prefix: str = DEFAULT_PREFIX) -> TaskRef:
    """Parse what a caller used to name a task. Raises NotFoundError for what can name none."""
    if isinstance(value, bool):
        raise NotFoundError(f"no task {value!r}: a task is named by its id (42, {prefix}42) or legacy id")
    if isinstance(value, int):
        return _by_id(value, value, prefix)
    if not isinstance(value, str) or not value.strip():
        raise NotFoundError(f"no task {value!r}: a task is named by its id (42, {prefix}42) or legacy id")
    text = value.strip()
    if "\x00" in text or not is_unicode(text):  # no task can be named so; some drivers choke on it
        raise NotFoundError(f"no task {value!r}: a task is named by its id (42, {prefix}42) or legacy id")
    digits = text[len(prefix):] if text[: len(prefix)].upper() == prefix else text
    if digits.isascii() and digits.isdigit():
        return _by_id(int(digits), value, prefix)
    return TaskRef(legacy_id=text)


def _by_id(number: int, original: object, prefix: str) -> TaskRef:
    if not 1 <= number <= MAX_TASK_ID:
        raise NotFoundError(f"no task {original!r}: task ids start at {prefix}1")
    return TaskRef(id=number)
