"""Fixtures shared by the suites, and the one backend matrix.

**The backend matrix.** A test that takes ``store`` runs once per backend: SQLite in memory,
SQLite in a file and PostgreSQL. A test that takes ``db_url`` (a database several stores or
processes open: a restart, a ``lobstore serve`` subprocess, a second connection) runs on the
two backends such a URL can name, SQLite in a file and PostgreSQL. ``backend_name`` names the
one in use (``sqlite-memory``, ``sqlite-file``, ``postgresql``); ``@pytest.mark.backends(...)``
narrows a test or a class to some of them, e.g. checks of SQLite's pragmas.

**PostgreSQL** is found by :func:`postgres_server_url` (``LOBSTORE_TEST_POSTGRES_URL``; CI
sets it, see .ci/run). Each test gets a schema of its own on that server, dropped afterwards.
Without the variable, a local server is used if one answers (``pytest_configure`` makes a
scratch database for the run and drops it at the end); otherwise those tests are left out and
one line says so — except when ``CI`` is set: there a missing server fails the run, since a
skip would hide a broken backend.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

pytest.register_assert_rewrite(
    "store_contract", "migration_contract", "costs_contract", "broker_contract", "wsgi_client",
)

BACKENDS = ("sqlite-memory", "sqlite-file", "postgresql")
SHARED_BACKENDS = ("sqlite-file", "postgresql")  # what a URL opened more than once can name
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
    # Under pytest-xdist the workers deselect; the controller, which prints this, only knows
    # that no server answered (or that the variable is set but empty), not how many were left.
    disabled = POSTGRES_ENV in os.environ and not os.environ[POSTGRES_ENV]
    if "deselected" not in _scratch and "absent" not in _scratch and not disabled:
        return
    if os.environ.get("CI"):
        return
    why = (f"no server answered at {LOCAL_SERVER}: {_scratch['absent']}" if "absent" in _scratch
           else f"{POSTGRES_ENV} is set but empty")
    count = f"{_scratch['deselected']} tests" if "deselected" in _scratch else "their tests"
    terminalreporter.write_line(
        f"PostgreSQL: {count} not run ({why}); "
        f"run them with {POSTGRES_ENV}=postgresql://USER@HOST:5432/DB", yellow=True,
    )


# -- where PostgreSQL is ------------------------------------------------------------------------
def postgres_server_url() -> str:
    """The URL of the PostgreSQL server the tests may use (a database they may create schemas
    in), or skip the test saying how to provide one; under CI, fail instead."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):  # CI must run them: a skip there would hide a broken backend
            pytest.fail(f"CI is set but {POSTGRES_ENV} is not: {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    return url


# -- the backend matrix -----------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that needs a backend (through ``store``, ``db_url`` or
    ``backend_name``) over the matrix."""
    if "backend_name" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = list(marker.args) if marker else list(BACKENDS)
    unknown = set(names) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown backends {sorted(unknown)}")
    if "db_url" in metafunc.fixturenames:
        names = [name for name in names if name in SHARED_BACKENDS]
    metafunc.parametrize("backend_name", names, ids=names)


@pytest.fixture
def db_url(backend_name: str, request: pytest.FixtureRequest) -> str:
    """A URL every store and process opening it shares (SQLite file, PostgreSQL)."""
    if backend_name == "sqlite-file":
        return request.getfixturevalue("sqlite_file_url")
    if backend_name == "postgresql":
        return request.getfixturevalue("postgres_url")
    raise pytest.UsageError(f"db_url has no {backend_name} form: a memory database is private to its store")


@pytest.fixture
def store(backend_name: str, request: pytest.FixtureRequest) -> Iterator:
    """An empty, migrated store on the backend of this run of the test."""
    from lobstore import open_store

    url = "sqlite://" if backend_name == "sqlite-memory" else request.getfixturevalue("db_url")
    with open_store(url) as opened:
        yield opened


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


# -- HTTP --------------------------------------------------------------------------------------
API_PREFIXES = ("/api", "/api/v1")


@pytest.fixture
def client(store):
    """The lobwife API over ``store``, called through WSGI."""
    from lobstore.adapters.http import make_app
    from wsgi_client import WsgiClient

    return WsgiClient(make_app(store))


@pytest.fixture(params=API_PREFIXES)
def api(request) -> str:
    """Each prefix the routes answer under in turn."""
    return request.param


@pytest.fixture(scope="session")
def key():
    """The GitHub App's private key (RSA, made once per run)."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def pem(key) -> bytes:
    """The same key as PEM (what GH_APP_PEM holds, base64-encoded)."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def github(key):
    """A fake GitHub API on 127.0.0.1 that checks the app's JWT (see fake_github.py)."""
    from fake_github import FakeGitHub

    fake = FakeGitHub(key.public_key())
    yield fake
    fake.close()


# -- lobstore serve ----------------------------------------------------------------------------
@pytest.fixture
def servers():
    """Start `lobstore serve` processes (``servers(db_url, *flags)``); all are killed at the end."""
    from lobstore_server import Server

    started: list[Server] = []
    yield lambda *args: started.append(Server(*args)) or started[-1]
    for server in started:
        server.kill()
