"""The task list's query kept per shape of request (lobstore/repositories/task_list.py): each
request gets its own tasks from the kept statement, and shapes that would grow without end
(ever longer lists of values, a repository's containment) are built each time."""

from __future__ import annotations

import json

from lobstore.filters import TaskFilter
from lobstore.repositories import task_list
from lobstore.repositories.task_list import MAX_KEPT_VALUES, list_query


def ids(found) -> list[int]:
    return [task["id"] for task in json.loads(found.body)]


def seed(store) -> None:
    for n in range(12):
        store.tasks.create(name=f"task {n}", type=f"kind{n % 4}", repos=[f"acme/r{n % 3}"], actor="test")
    for n in (1, 2, 3):
        store.tasks.update(n, status="active", actor="test")
    store.tasks.update(4, status="blocked", actor="test")


def test_one_shape_keeps_one_statement_and_each_request_gets_its_own_tasks(store):
    seed(store)
    contains = store.backend.json_list_contains
    first, _, kept = list_query(TaskFilter(type=("kind1",)), cursor=None, order="asc", limit=50, contains=contains)
    again, params, kept_again = list_query(TaskFilter(type=("kind2",)), cursor=None, order="asc", limit=5,
                                           contains=contains)
    assert kept and kept_again and again is first
    assert params == {"type_0": "kind2", "limit": 5}
    assert ids(store.tasks.list_json(type="kind1")) == [2, 6, 10]
    assert ids(store.tasks.list_json(type="kind2")) == [3, 7, 11]
    assert ids(store.tasks.list_json(type="kind2", limit=2, after=3)) == [7, 11]
    assert ids(store.tasks.list_json(status=["active", "blocked"], order="desc")) == [4, 3, 2, 1]
    assert ids(store.tasks.list_json(status=["queued", "blocked"], limit=3)) == [4, 5, 6]
    assert [t.id for t in store.tasks.list(status=["active", "blocked"], type=["kind0", "kind3"])] == [1, 4]
    assert store.tasks.count(status=["active", "blocked"], type=["kind0", "kind3"]) == 2


def test_many_values_and_a_repository_are_built_each_time_and_still_right(store):
    seed(store)
    shapes = len(task_list._SHAPES)
    kinds = tuple(f"kind{n}" for n in range(MAX_KEPT_VALUES + 5))
    _statement, _params, kept = list_query(TaskFilter(type=kinds), cursor=None, order="asc", limit=50,
                                           contains=store.backend.json_list_contains)
    assert not kept
    assert ids(store.tasks.list_json(type=list(kinds))) == list(range(1, 13))
    _statement, _params, kept = list_query(TaskFilter(repo="acme/r1"), cursor=None, order="asc", limit=50,
                                           contains=store.backend.json_list_contains)
    assert not kept
    assert ids(store.tasks.list_json(repo="acme/r1")) == [2, 5, 8, 11]
    assert ids(store.tasks.list_json(repo="acme/r2", type="kind1")) == [6]
    assert len(task_list._SHAPES) == shapes  # neither kept a statement


def test_a_value_given_twice_counts_once(store):
    seed(store)
    assert TaskFilter(status=("active", "active", "blocked", "active")).status == ("active", "blocked")
    assert ids(store.tasks.list_json(status=["blocked", "blocked"])) == [4]
