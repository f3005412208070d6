"""Tasks straight to the JSON form clients see, for the hot read routes (GET one task, the list).

``Task.to_dict()`` is the JSON form of a task. Reaching it from a row through SQLAlchemy's row
processing and a ``Task`` costs three conversions per value (text to datetime, datetime into a
Task, datetime back to text); a list of 50 tasks spent four fifths of its time there. Here the
same query (the repository builds it once, as for ``Task`` objects) gives the JSON directly:

- **SQLite** writes each task's JSON object itself (``json_object``, in C and without holding
  Python's GIL): the query's columns are replaced by that one column, with the id and version
  beside it. :func:`sqlite_json_select` builds it.
- **PostgreSQL** rows come whole from the driver in one round trip; :class:`TaskJsonReader`
  writes each value once into the dict ``to_dict`` would give.

Both give ``to_dict``'s keys in its order and its values, which ``tests/test_task_json.py``
holds them to on every backend. Everything that is not a hot route (the library's ``get`` and
``list``, the sync, the importers) keeps reading ``Task`` objects.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..clock import to_iso
from ..ids import format_ref
from ..jsoncodec import dumps as jsoncodec_dumps
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


# -- SQLite: the JSON made by the database ------------------------------------------------------
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # to_iso's: whole seconds, UTC (strftime converts an offset)
MAX_JSON_KEYS = 60  # json_object takes at most 127 arguments (SQLITE_MAX_FUNCTION_ARG's default)


def sqlite_json_select(select: sa.Select[Any], id_prefix: str) -> sa.Select[Any] | None:
    """``select`` (over TASK_SELECT's columns) giving ``(json, id, version)`` rows instead, the
    json being the task's ``to_dict()`` as SQLite writes it. None when the task has more keys
    than one json_object call takes (a far-future schema: the caller reads rows instead)."""
    columns = {str(column.name): column for column in select.selected_columns}  # plain str: a bound key
    extras = [name for name in columns if name not in TASK_FIELD_NAMES]
    if 2 + len(TASK_JSON_FIELDS) + len(extras) > MAX_JSON_KEYS:
        return None
    if any(not isinstance(columns[name].type, SQLITE_JSON_TYPES) for name in extras):
        return None  # a column type written here differently than to_dict would: rows instead
    key = (id_prefix, *columns.values())  # the column objects themselves (TASK_SELECT's, in practice)
    document = _DOCUMENTS.get(key)
    if document is None:
        pairs: list[Any] = ["id", columns["id"], "task_id",
                            sa.literal(id_prefix, sa.Text) + sa.cast(columns["id"], sa.Text)]
        for name in (*TASK_JSON_FIELDS, *extras):
            pairs += [name, _sqlite_json_value(name, columns.get(name))]
        # Written out as SQL once: as an expression, its 200 parts would be walked for
        # SQLAlchemy's cache key on every request (a third of a list's time).
        sql = sa.func.json_object(*pairs).compile(dialect=sqlite_dialect.dialect(),
                                                  compile_kwargs={"literal_binds": True})
        document = _DOCUMENTS[key] = sa.literal_column(str(sql), sa.Text).label("json")
    return select.with_only_columns(document, columns["id"], columns["version"], maintain_column_froms=True)


_DOCUMENTS: dict[tuple[Any, ...], sa.Label[Any]] = {}
# The column types SQLite's JSON gives as to_dict does (an added column of another type, a
# Numeric or a naive DateTime, makes the reads go through rows).
SQLITE_JSON_TYPES = (UTCDateTime, sa.JSON, sa.Boolean, sa.String, sa.Integer, sa.Float)
# What a time SQLite cannot read becomes in its JSON (the NUL character, "\u0000"): such a
# task is read through its row instead, where Python's parser reads more shapes.
UNREADABLE = "\\u0000"


def _sqlite_json_value(name: str, column: Any) -> Any:
    """One value of the object, written as Task reads the column and to_dict writes it."""
    if column is None:  # a field the query does not read: Task's default
        return sa.func.json(sa.literal(jsoncodec_dumps(TASK_JSON_DEFAULTS[name]), sa.Text))
    kind = column.type
    text = sa.type_coerce(column, sa.Text)
    if name in TIME_FIELDS or isinstance(kind, UTCDateTime):
        return sa.case((column.is_(None), sa.null()),
                       else_=sa.func.coalesce(sa.func.strftime(ISO_FORMAT, text), sa.func.char(0)))
    if name in ("repos", "tags"):  # NULL and JSON null read as an empty list
        return sa.func.json(sa.func.coalesce(sa.func.nullif(text, sa.literal("null", sa.Text)), sa.literal("[]", sa.Text)))
    if name == "metadata":
        return sa.func.json(sa.func.coalesce(sa.func.nullif(text, sa.literal("null", sa.Text)), sa.literal("{}", sa.Text)))
    if isinstance(kind, sa.JSON):  # broker_repos and other JSON columns: null stays null
        return sa.func.json(sa.func.nullif(text, sa.literal("null", sa.Text)))
    if isinstance(kind, sa.Boolean):
        as_json = sa.case((sa.type_coerce(column, sa.Integer) != 0, sa.literal("true", sa.Text)),
                          else_=sa.literal("false", sa.Text))
        return sa.func.json(as_json) if name == "requires_qa" else \
            sa.case((column.is_(None), sa.null()), else_=sa.func.json(as_json))
    if name == "token_count":
        return sa.func.coalesce(column, 0)
    return column


# -- what the repository hands the API -------------------------------------------------------------
@dataclass(frozen=True)
class TasksJson:
    """Tasks in their JSON form, encoded: ``body`` is one object (:meth:`TaskJson.one`) or an
    array; ``ids`` and ``versions`` are the tasks', in order (for ETags and the next page)."""

    body: bytes
    ids: tuple[int, ...]
    versions: tuple[int, ...]


class TaskJson:
    """The JSON of the tasks a query over TASK_SELECT finds, made the quick way per dialect."""

    def __init__(self, dialect_name: str, id_prefix: str) -> None:
        self.sqlite = dialect_name == "sqlite"
        self.id_prefix = id_prefix
        self.reader = TaskJsonReader(dialect_name, lambda task_id: format_ref(task_id, id_prefix))
        self._sqlite_selects: dict[sa.Select[Any], sa.Select[Any] | None] = {}

    def one(self, scope: Any, select: sa.Select[Any], params: dict[str, Any]) -> TasksJson | None:
        """The task a constant query (by id, by legacy id) finds, or None. The query is
        compiled once (``select_prepared``)."""
        if self.sqlite:
            query = self._sqlite_select(select)
            if query is not None:
                _names, rows = scope.select_prepared(query, params)
                if not rows:
                    return None
                if UNREADABLE not in rows[0][0]:
                    return TasksJson(rows[0][0].encode(), (rows[0][1],), (rows[0][2],))
        names, rows = scope.select_prepared(select, params)
        if not rows:
            return None
        (task,) = self.reader.dicts(names, rows)
        return TasksJson(jsoncodec_dumps(task), (task["id"],), (task["version"],))

    def many(self, scope: Any, select: sa.Select[Any], params: dict[str, Any] | None = None, *,
             prepared: bool = False) -> TasksJson:
        """The tasks a query finds, as a JSON array in the query's order. ``prepared``: the
        query is a kept one (task_list.py), compiled once and run on the driver's connection."""
        run = scope.select_prepared if prepared else scope.select_raw
        query = self._sqlite_select(select, kept=prepared) if self.sqlite else None
        if query is not None:
            _names, rows = run(query, params or {})
            documents, ids, versions = zip(*rows) if rows else ((), (), ())
            body = f"[{','.join(documents)}]"
            if UNREADABLE not in body:
                return TasksJson(body.encode(), ids, versions)
        found = self.reader.dicts(*run(select, params or {}))
        return TasksJson(jsoncodec_dumps(found), tuple(task["id"] for task in found),
                         tuple(task["version"] for task in found))

    def _sqlite_select(self, select: sa.Select[Any], *, kept: bool = True) -> sa.Select[Any] | None:
        """The JSON form of ``select`` (sqlite_json_select), kept per statement when it is kept."""
        if not kept:
            return sqlite_json_select(select, self.id_prefix)
        if select not in self._sqlite_selects:
            self._sqlite_selects[select] = sqlite_json_select(select, self.id_prefix)
        return self._sqlite_selects[select]


_MADE: dict[tuple[str, str], TaskJson] = {}


def task_json(dialect_name: str, id_prefix: str) -> TaskJson:
    """The TaskJson of one dialect and id prefix (its compiled queries and row plans are kept)."""
    key = (dialect_name, id_prefix)
    made = _MADE.get(key)
    if made is None:
        made = _MADE[key] = TaskJson(dialect_name, id_prefix)
    return made

