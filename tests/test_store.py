"""The store contract and the migration contract, on every backend of the matrix (conftest.py);
what only one backend does is in test_store_sqlite.py and test_store_postgresql.py."""

from __future__ import annotations

from migration_contract import MigrationContract
from store_contract import StoreContract


class TestStore(StoreContract):
    __test__ = True


class TestMigrations(MigrationContract):
    __test__ = True
