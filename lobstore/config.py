"""Settings: flags win over environment variables, which win over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigurationError

DEFAULT_URL = "sqlite:///lobstore.db"

ENV_URL = "LOBSTORE_URL"
ENV_ID_PREFIX = "LOBSTORE_ID_PREFIX"
ENV_VAULT = "LOBSTORE_VAULT"
ENV_SYNC_INTERVAL = "LOBSTORE_SYNC_INTERVAL"
DEFAULT_SYNC_INTERVAL = 300.0


def database_url(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The database URL: ``--db``, else ``$LOBSTORE_URL``, else ``lobstore.db`` here."""
    return flag or environ.get(ENV_URL) or DEFAULT_URL


def id_prefix(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    return flag or environ.get(ENV_ID_PREFIX) or "T"


def sync_interval(flag: float | str | None = None, environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between sync cycles: ``--interval``, else ``$LOBSTORE_SYNC_INTERVAL``, else 300."""
    raw = flag if flag is not None else environ.get(ENV_SYNC_INTERVAL)
    if raw is None or raw == "":
        return DEFAULT_SYNC_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(
            f"sync interval must be a number of seconds above 0 (from --interval or "
            f"${ENV_SYNC_INTERVAL}), got {raw!r}"
        )
    return value
ENV_HOST = "LOBSTORE_HOST"
ENV_PORT = "LOBSTORE_PORT"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081


def host(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """Where `lobstore serve` listens: ``--host``, else ``$LOBSTORE_HOST``, else loopback."""
    return flag or environ.get(ENV_HOST) or DEFAULT_HOST


def port(flag: int | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """``--port``, else ``$LOBSTORE_PORT``, else 8081. 0 asks the system for a free port."""
    value: object = flag if flag is not None else environ.get(ENV_PORT) or DEFAULT_PORT
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigurationError(f"port must be a number from 0 to 65535, got {value!r} (--port or ${ENV_PORT})")
    return int(text)


def vault_path(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The vault folder for sync: ``--vault``, else ``$LOBSTORE_VAULT``; None means no sync."""
    value = flag or environ.get(ENV_VAULT)
    return Path(value) if value else None
