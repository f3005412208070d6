"""The store contract and the migration contract, on every backend of the matrix (conftest.py);
what only one backend does is in test_store_sqlite.py and test_store_postgresql.py."""

from __future__ import annotations

from migration_contract import MigrationContract
from store_contract import StoreContract


class TestStore(StoreContract):
    __test__ = True


class TestMigrations(MigrationContract):
    __test__ = True


def test_a_list_of_several_statuses_pages_like_one_of_each_merged(store):
    # Several statuses are read one arm per status and merged in id order: the pages must be
    # what filtering every task would give, in both orders, with other filters and a cursor.
    wanted = ("queued", "active", "blocked")
    for n in range(60):
        task = store.tasks.create(name=f"t{n}", type="swe" if n % 3 else "research")
        if n % 4 == 1:
            store.tasks.update(task.ref, status="active")
        elif n % 4 == 2:
            store.tasks.update(task.ref, status="blocked")
        elif n % 4 == 3:
            store.tasks.update(task.ref, status="cancelled")
    every = store.tasks.list(limit=1000)
    for order, key in (("asc", 1), ("desc", -1)):
        for type_ in (None, "swe"):
            expected = [t.id for t in sorted(every, key=lambda t: key * t.id)
                        if t.status in wanted and type_ in (None, t.type)]
            got, after = [], None
            while True:
                page = store.tasks.list(status=list(wanted), type=type_, limit=7, order=order, after=after)
                got += [t.id for t in page]
                if len(page) < 7:
                    break
                after = page[-1].id
            assert got == expected, (order, type_)
