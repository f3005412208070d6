"""Fixtures shared by the suites.

PostgreSQL tests use ``LOBSTORE_TEST_POSTGRES_URL`` (CI sets it; see .ci/run). Each test gets
a schema of its own on that server, dropped afterwards. Without the variable they skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

pytest.register_assert_rewrite("store_contract", "migration_contract", "costs_contract", "broker_contract")

POSTGRES_ENV = "LOBSTORE_TEST_POSTGRES_URL"
SKIP_REASON = (
    f"PostgreSQL tests need {POSTGRES_ENV}, e.g. "
    f"{POSTGRES_ENV}=postgresql://postgres@127.0.0.1:5432/test (CI sets it)"
)


def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):  # CI must run them: a skip there would hide a broken backend
            pytest.fail(f"CI is set but {POSTGRES_ENV} is not: {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections all live in a fresh, private schema on the test server."""
    import sqlalchemy as sa

    server = postgres_server_url()
    schema = f"lobstore_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:  # no try/except: an unreachable server must fail the test
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in server else "?"
    yield f"{server}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture
def sqlite_file_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'lobstore.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def each_store(request):
    """An empty store on each backend in turn (the PostgreSQL one skips without a server)."""
    from lobstore import open_store

    url = "sqlite://" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with open_store(url) as store:
        yield store


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A database URL for a `lobstore serve` subprocess, on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lobwife.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def servers():
    """Start `lobstore serve` processes (``servers(db_url, *flags)``); all are killed at the end."""
    from lobstore_server import Server

    started: list[Server] = []
    yield lambda *args: started.append(Server(*args)) or started[-1]
    for server in started:
        server.kill()
