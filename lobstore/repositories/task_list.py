"""The task list's query: one definition, built once per shape of request.

A list is asked for in a handful of shapes (which filters, how many values each, a cursor or
not, the order); the values change with every request. So the query is built with named
parameters, once per shape, and each request only fills them in: building the statement and
SQLAlchemy's cache key for it cost a list of 50 tasks 40 % of its time. The hot route runs the
kept statement on the driver's connection (``select_prepared``); the library's ``list`` and
``count`` execute the same statements through SQLAlchemy.

Not kept, and built each time as before: a repository filter (its condition differs by dialect,
a JSON containment, and carries its value) and a filter of more than ``MAX_KEPT_VALUES`` values
(each count of values is a shape of its own: a client sending ever longer lists must not fill
memory, nor the cache that the usual shapes need).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from ..filters import MANY, TaskFilter
from ..schema import tasks
from .base import TASK_SELECT

Contains = Callable[[sa.ColumnElement[Any], str], sa.ColumnElement[bool]]  # backend.json_list_contains

TIME_BOUNDS = (  # filter, column, lower bound (inclusive) or upper (exclusive)
    ("created_since", "created_at", True),
    ("created_until", "created_at", False),
    ("updated_since", "updated_at", True),
    ("updated_until", "updated_at", False),
)
MAX_SHAPES = 256  # kept statements; a list of a rarer shape builds its own
MAX_KEPT_VALUES = 16  # filter values a kept shape may take (a list of 1,000 types is built each time)
_SHAPES: dict[tuple[Any, ...], sa.Select[Any]] = {}
_SHAPES_LOCK = threading.Lock()


def filter_params(given: TaskFilter) -> dict[str, Any]:
    """The values of :func:`filter_conditions`' parameters."""
    params: dict[str, Any] = {}
    for name in MANY:
        for at, value in enumerate(getattr(given, name)):
            params[f"{name}_{at}"] = value
    if given.text is not None:
        words = given.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["text"] = f"%{words}%"
    for name, _column, _lower in TIME_BOUNDS:
        if (bound := getattr(given, name)) is not None:
            params[name] = bound
    return params


def filter_conditions(given: TaskFilter, contains: Contains) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of a filter, its values as named parameters (:func:`filter_params`)."""
    conditions: list[sa.ColumnElement[bool]] = []
    for name in MANY:  # columns of the same name; any of the values matches
        count = len(getattr(given, name))
        if count:
            column = tasks.c[name]
            conditions.append(column.in_([sa.bindparam(f"{name}_{at}", type_=column.type) for at in range(count)]))
    if given.repo is not None:
        conditions.append(contains(tasks.c.repos, given.repo))
    if given.text is not None:
        pattern = sa.bindparam("text", type_=sa.String)
        conditions.append(sa.or_(tasks.c.name.ilike(pattern, escape="\\"), tasks.c.slug.ilike(pattern, escape="\\")))
    for name, column_name, lower in TIME_BOUNDS:
        if getattr(given, name) is not None:
            column = tasks.c[column_name]
            bound = sa.bindparam(name, type_=column.type)
            conditions.append(column >= bound if lower else column < bound)
    return conditions


def list_query(given: TaskFilter, *, cursor: int | None, order: str, limit: int,
               contains: Contains) -> tuple[sa.Select[Any], dict[str, Any], bool]:
    """The list's statement, its parameters, and whether the statement is a kept one (the
    same object for every request of its shape: safe to compile once)."""
    params = {**filter_params(given), "limit": limit}
    if cursor is not None:
        params["after"] = cursor
    counts = tuple(len(getattr(given, name)) for name in MANY)
    kept = given.repo is None and sum(counts) <= MAX_KEPT_VALUES
    shape = (order, cursor is not None, given.text is not None, *counts,
             *(getattr(given, name) is not None for name, _column, _lower in TIME_BOUNDS))
    statement = _SHAPES.get(shape) if kept else None
    if statement is None:
        statement = _build(given, cursor is not None, order, contains)
        with _SHAPES_LOCK:  # two first requests of a shape: the first statement is the one kept
            if kept and (shape in _SHAPES or len(_SHAPES) < MAX_SHAPES):
                statement = _SHAPES.setdefault(shape, statement)
            else:
                kept = False
    return statement, params, kept


def _build(given: TaskFilter, paged: bool, order: str, contains: Contains) -> sa.Select[Any]:
    ascending = order == "asc"
    limit = sa.bindparam("limit", type_=sa.Integer)
    page: list[sa.ColumnElement[bool]] = []
    if paged:
        after = sa.bindparam("after", type_=sa.Integer)
        page.append(tasks.c.id > after if ascending else tasks.c.id < after)
    by_id = tasks.c.id if ascending else tasks.c.id.desc()
    if len(given.status) > 1:
        # One arm per status, each read in id order from (status, id) and merged: sorting
        # every matching row (a temporary B-tree in SQLite) costs 10 ms at a million tasks.
        others = filter_conditions(replace(given, status=()), contains)
        arms = [sa.select(tasks.c.id).where(tasks.c.status == sa.bindparam(f"status_{at}", type_=tasks.c.status.type),
                                            *others, *page)
                for at in range(len(given.status))]
        merged_id = sa.literal_column("id")
        merged = sa.union_all(*arms).order_by(merged_id if ascending else merged_id.desc()).limit(limit)
        query = TASK_SELECT.where(tasks.c.id.in_(merged))
    else:
        query = TASK_SELECT.where(*filter_conditions(given, contains), *page)
    return query.order_by(by_id).limit(limit)
