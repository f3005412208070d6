"""Backends, chosen by URL scheme.

The registry holds ``"module:Class"`` strings imported on first use, so ``import lobstore``
needs no database driver and a missing driver becomes a ConfigurationError naming the extra.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..errors import ConfigurationError
from .base import SqlBackend

__all__ = ["SqlBackend", "backend_for", "BACKENDS"]

BACKENDS: dict[str, str] = {
    "sqlite": "lobstore.backends.sqlite:SQLiteBackend",
    "postgresql": "lobstore.backends.postgresql:PostgreSQLBackend",
}
# Spellings people paste from other tools.
_ALIASES = {"postgres": "postgresql"}


def _load(name: str) -> type[SqlBackend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ConfigurationError(
            f"no lobstore backend for {name!r} URLs; supported: {', '.join(sorted(BACKENDS))} "
            "(e.g. sqlite:///lobstore.db or postgresql://user@host/db)"
        ) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def backend_for(url_or_engine: str | sa.Engine, *, read_only: bool = False, **options: object) -> SqlBackend:
    """The backend for a database URL or a ready SQLAlchemy Engine.

    ``read_only`` is for commands that only look (``migrate --dry-run``, ``info``, the source of
    ``copy`` and ``backup``): a database that does not exist is a MissingDatabaseError instead
    of being created, and the connections cannot write."""
    if isinstance(url_or_engine, sa.Engine):
        return _load(url_or_engine.dialect.name).from_engine(url_or_engine, **options)
    if not isinstance(url_or_engine, str) or not url_or_engine.strip():
        raise ConfigurationError(
            "a database URL is needed, e.g. sqlite:///lobstore.db or postgresql://user@host/db"
        )
    try:
        url = make_url(url_or_engine.strip())
    except Exception as exc:  # SQLAlchemy raises ArgumentError, or ValueError for a bad port
        raise ConfigurationError(
            f"cannot read database URL {url_or_engine!r}: {exc}; "
            "expected e.g. sqlite:///lobstore.db or postgresql://user@host/db"
        ) from None
    scheme = url.get_backend_name()
    return _load(_ALIASES.get(scheme, scheme)).from_url(url, read_only=read_only, **options)
