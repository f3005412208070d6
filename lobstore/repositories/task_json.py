"""Task rows straight to the JSON form clients see, for the hot read routes.

``Task.to_dict()`` is the JSON form of a task. Reaching it from a row through SQLAlchemy's row
processing and a ``Task`` costs three conversions per value (text to datetime, datetime into a
Task, datetime back to text); a list of 50 tasks spent four fifths of its time there. The
readers here take the driver's rows (``fetch_raw``) and write each value once into the dict
``to_dict`` would give — the same keys in the same order, the same values — which
``tests/test_task_json.py`` holds them to on every backend.

Everything that is not a hot route (the library's ``get``, ``list``, the sync, the importers)
keeps reading ``Task`` objects.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..clock import to_iso
from ..ids import format_ref
from ..jsoncodec import loads as json_loads
from ..models import TASK_FIELD_NAMES, TASK_JSON_DEFAULTS, TASK_JSON_FIELDS, TIME_FIELDS
from ..schema import UTCDateTime, _sqlite_utc, tasks

Convert = Callable[[Any], Any]
TaskDict = dict[str, Any]


def _sqlite_iso(value: str) -> str | None:
    """SQLite's stored text (``2026-02-16 12:00:00.000000``, naive UTC) as ``to_iso`` writes it
    (``2026-02-16T12:00:00Z``): two slices when the text has the stored shape, the full parse
    for anything else (an offset, a ``T``, a value written by hand)."""
    if value.__class__ is str and len(value) in (19, 26) and value[10] == " " and value[19:20] in ("", "."):
        return f"{value[:10]}T{value[11:19]}Z"
    return to_iso(_sqlite_utc(value))


def _sqlite_json(value: Any) -> Any:
    # Most rows hold empty lists and objects: no parser needed.
    if value == "[]":
        return []
    if value == "{}":
        return {}
    return json_loads(value) if value.__class__ in (str, bytes) else value


def _same(value: Any) -> Any:
    return value


def _plain_extra(value: Any) -> Any:
    return to_iso(value) if isinstance(value, datetime) else value


def _extra(sqlite: bool, column: sa.Column[Any] | None) -> Convert:
    """A column Task does not name, as SQLAlchemy would type it (None stays None), times as text."""
    if column is not None and isinstance(column.type, UTCDateTime):
        return _sqlite_iso if sqlite else to_iso
    if column is not None and sqlite and isinstance(column.type, sa.JSON):
        return _sqlite_json
    if column is not None and sqlite and isinstance(column.type, sa.Boolean):
        return bool
    return _plain_extra


class TaskJsonReader:
    """Makes the JSON form of tasks from raw rows of a query over ``tasks`` (TASK_SELECT).

    Per row: one dict built in C from the row's values in to_dict's order, then only the
    values that change are converted. A field's conversion mirrors how Task reads the row
    (``tasks.task_from_row``) and how to_dict writes it: ``nullable`` ones keep None as None,
    the others give None their Task default.
    """

    def __init__(self, dialect_name: str, ref: Callable[[int], str]) -> None:
        sqlite = self._sqlite = dialect_name == "sqlite"
        self._ref = ref
        parse = _sqlite_json if sqlite else _same
        # Converted only when not None: times, the registration's repos.
        self._nullable: dict[str, Convert] = {name: _sqlite_iso if sqlite else to_iso for name in TIME_FIELDS}
        self._nullable["broker_repos"] = lambda value: None if (got := parse(value)) is None else list(got)
        # Always converted: None (or JSON null) becomes Task's default.
        self._always: dict[str, Convert] = {
            "repos": lambda value: [] if value is None else list(parse(value) or ()),
            "tags": lambda value: [] if value is None else list(parse(value) or ()),
            "metadata": lambda value: {} if value is None else dict(parse(value) or {}),
            "requires_qa": bool,
            "token_count": lambda value: value or 0,
        }
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def dicts(self, names: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> list[TaskDict]:
        """``Task.to_dict()`` of each row, in order."""
        if not rows:
            return []
        plan = self._plans.get(names) or self._plan(names)
        keys, pick, nullable, always, missing = plan.keys, plan.pick, plan.nullable, plan.always, plan.missing
        ref = self._ref
        out = []
        for row in rows:
            task: TaskDict = dict(zip(keys, pick(row)))
            task["task_id"] = ref(task["id"])
            for name, convert in nullable:
                if (value := task[name]) is not None:
                    task[name] = convert(value)
            for name, convert in always:
                task[name] = convert(task[name])
            for name, default in missing:
                task[name] = copy.copy(default)
            out.append(task)
        return out

    def _plan(self, names: tuple[str, ...]) -> _Plan:
        """Where each key comes from, worked out once per shape of row: id and task_id, the
        fields in to_dict's order (one the row lacks gets Task's default), then the other
        columns in the row's order."""
        where = {name: at for at, name in enumerate(names)}
        at_id = where["id"]
        fields = [name for name in TASK_JSON_FIELDS if name in where]
        extras = [name for name in names if name not in TASK_FIELD_NAMES]
        keys = ("id", "task_id", *TASK_JSON_FIELDS, *extras)
        # task_id is filled from id; a missing field's slot holds id until its default replaces it.
        sources = [at_id, at_id, *(where.get(name, at_id) for name in TASK_JSON_FIELDS), *(where[n] for n in extras)]
        nullable = [(name, self._nullable[name]) for name in fields if name in self._nullable]
        nullable += [(name, _extra(self._sqlite, tasks.c.get(name))) for name in extras]
        plan = self._plans[names] = _Plan(
            keys=keys, pick=operator.itemgetter(*sources),
            nullable=tuple(nullable),
            always=tuple((name, self._always[name]) for name in fields if name in self._always),
            missing=tuple((name, TASK_JSON_DEFAULTS[name]) for name in TASK_JSON_FIELDS if name not in where),
        )
        return plan


@dataclass(frozen=True)
class _Plan:
    keys: tuple[str, ...]
    pick: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    nullable: tuple[tuple[str, Convert], ...]
    always: tuple[tuple[str, Convert], ...]
    missing: tuple[tuple[str, Any], ...]


_READERS: dict[tuple[str, str], TaskJsonReader] = {}


def reader_for(dialect_name: str, id_prefix: str) -> TaskJsonReader:
    """The reader of one dialect and id prefix (its row plans are kept across requests)."""
    key = (dialect_name, id_prefix)
    reader = _READERS.get(key)
    if reader is None:
        reader = _READERS[key] = TaskJsonReader(dialect_name, lambda task_id: format_ref(task_id, id_prefix))
    return reader

