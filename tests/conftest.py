"""Fixtures shared by the suites.

PostgreSQL tests use ``LOBSTORE_TEST_POSTGRES_URL`` (CI sets it; see .ci/run). Each test gets
a schema of its own on that server, dropped afterwards. Without the variable, a local server
is used if one answers (see ``pytest_configure``); otherwise they are not run, and one line
says so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

pytest.register_assert_rewrite("store_contract", "migration_contract", "costs_contract", "broker_contract")

POSTGRES_ENV = "LOBSTORE_TEST_POSTGRES_URL"
SKIP_REASON = (
    f"PostgreSQL tests need {POSTGRES_ENV}, e.g. "
    f"{POSTGRES_ENV}=postgresql://postgres@127.0.0.1:5432/test (CI sets it)"
)


# -- PostgreSQL for `make test` without setup ------------------------------------------------
# Without LOBSTORE_TEST_POSTGRES_URL, a server answering at the default local address gets a
# scratch database for this run (dropped at the end) and the PostgreSQL tests run on it. With
# no server they are deselected, and one line at the end says how to run them.
# LOBSTORE_TEST_POSTGRES_URL= (set, empty) turns the detection off.
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432"
_scratch: dict[str, str] = {}  # "url" of the scratch database, or "absent": why there is none


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(POSTGRES_ENV) or POSTGRES_ENV in os.environ:
        return
    try:
        import psycopg

        with psycopg.connect(f"{LOCAL_SERVER}/postgres", connect_timeout=2, autocommit=True) as conn:
            name = f"lobstore_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - no server, no driver, no rights: run without
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _scratch["absent"] = reason.removeprefix("connection failed: ")
        return
    _scratch["url"] = os.environ[POSTGRES_ENV] = f"{LOCAL_SERVER}/{name}"


def pytest_unconfigure(config: pytest.Config) -> None:
    url = _scratch.pop("url", None)
    if url is None:
        return
    import psycopg

    os.environ.pop(POSTGRES_ENV, None)
    with psycopg.connect(f"{LOCAL_SERVER}/postgres", connect_timeout=5, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(POSTGRES_ENV) or os.environ.get("CI"):  # CI fails them instead (below)
        return
    needs_server = [item for item in items if _needs_postgres(item)]
    if needs_server:
        _scratch["deselected"] = str(len(needs_server))
        config.hook.pytest_deselected(items=needs_server)
        items[:] = [item for item in items if item not in set(needs_server)]


def _needs_postgres(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "postgres_url" in getattr(item, "fixturenames", ()) or any(
        value in ("postgresql", "postgres") for value in params.values() if isinstance(value, str)
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "deselected" in _scratch:
        why = (f"no server answered at {LOCAL_SERVER}: {_scratch['absent']}" if "absent" in _scratch
               else f"{POSTGRES_ENV} is set but empty")
        terminalreporter.write_line(
            f"PostgreSQL: {_scratch['deselected']} tests not run ({why}); "
            f"run them with {POSTGRES_ENV}=postgresql://USER@HOST:5432/DB", yellow=True,
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
