"""Settings: flags win over environment variables, which win over defaults."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .broker.github import GitHubAppTokenProvider
    from .broker.policy import BrokerPolicy

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
    """Seconds between sync cycles: ``--sync-interval``, else ``$LOBSTORE_SYNC_INTERVAL``, else 300."""
    raw = flag if flag is not None else environ.get(ENV_SYNC_INTERVAL)
    if raw is None or raw == "":
        return DEFAULT_SYNC_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(
            f"sync interval must be a number of seconds above 0 (from --sync-interval or "
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


ENV_AUTH = "LOBSTORE_AUTH"
AUTH_REQUIRED, AUTH_OFF = "required", "off"


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``: 127.0.0.0/8, ::1 or ``localhost``.
    Anything else (0.0.0.0, a LAN address, another name) may be reachable from the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def auth_mode(flag: str | None, host: str, environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """``--auth``, else ``$LOBSTORE_AUTH``, else ``required`` on an address others can reach and
    ``off`` on loopback. Returns (mode, whether it was set explicitly): authentication is never
    off on a reachable address unless someone said so."""
    value = flag or environ.get(ENV_AUTH) or None
    if value is None:
        return (AUTH_OFF if is_loopback(host) else AUTH_REQUIRED), False
    mode = value.strip().lower()
    if mode not in (AUTH_REQUIRED, AUTH_OFF):
        raise ConfigurationError(f"--auth (or ${ENV_AUTH}) is required or off, got {value!r}")
    return mode, True


def vault_path(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The vault folder for sync: ``--vault``, else ``$LOBSTORE_VAULT``; None means no sync."""
    value = flag or environ.get(ENV_VAULT)
    return Path(value) if value else None


ENV_JOBS = "LOBSTORE_JOBS"


def jobs_file(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The cron jobs file for `serve`: ``--jobs``, else ``$LOBSTORE_JOBS``; None means no jobs."""
    value = flag or environ.get(ENV_JOBS)
    return Path(value) if value else None


# -- token broker ------------------------------------------------------------------------------
# The names lobwife already uses for its GitHub App.
ENV_GH_APP_ID = "GH_APP_ID"
ENV_GH_APP_INSTALL_ID = "GH_APP_INSTALL_ID"
ENV_GH_APP_PEM = "GH_APP_PEM"  # base64-encoded PEM (plain PEM is accepted too)
ENV_GH_APP_PEM_PATH = "GH_APP_PEM_PATH"
ENV_GITHUB_API = "LOBSTORE_GITHUB_API"  # e.g. a GitHub Enterprise API, or a local fake in tests
ENV_BROKER_TTL = "LOBSTORE_BROKER_TTL"  # seconds a registration lives (default 24 h)
DEFAULT_BROKER_TTL = timedelta(hours=24)


def token_provider(environ: Mapping[str, str] = os.environ, *, owner: str | None = None) -> GitHubAppTokenProvider | None:
    """The GitHub App provider from ``GH_APP_*``, or None when ``GH_APP_ID`` is unset (tokens
    are then refused with a 503). A half-configured app is a ConfigurationError. ``owner``:
    the installation's owner, when the broker policy names it (else asked from GitHub)."""
    app_id = environ.get(ENV_GH_APP_ID, "").strip()
    if not app_id:
        return None
    from .broker.github import DEFAULT_API_BASE, GitHubAppTokenProvider, load_private_key

    install_id = environ.get(ENV_GH_APP_INSTALL_ID, "").strip()
    if not install_id:
        raise ConfigurationError(f"{ENV_GH_APP_ID} is set but {ENV_GH_APP_INSTALL_ID} is not")
    pem, path = environ.get(ENV_GH_APP_PEM) or None, environ.get(ENV_GH_APP_PEM_PATH) or None
    if pem is None and path is None:
        raise ConfigurationError(f"{ENV_GH_APP_ID} is set but neither {ENV_GH_APP_PEM} nor {ENV_GH_APP_PEM_PATH} is")
    key = load_private_key(pem=pem) if pem is not None else load_private_key(path=path)
    return GitHubAppTokenProvider(app_id, install_id, key, api_base=environ.get(ENV_GITHUB_API) or DEFAULT_API_BASE,
                                  owner=owner)


ENV_BROKER_POLICY = "LOBSTORE_BROKER_POLICY"  # a TOML file: see lobstore.broker.policy


def broker_policy(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> BrokerPolicy:
    """The token broker's policy: ``--broker-policy``, else ``$LOBSTORE_BROKER_POLICY``, else
    the defaults (no allow-list beyond the installation's owner, upstream's permissions, the
    fleet's services)."""
    from .broker.policy import BrokerPolicy, load_policy

    path = flag or environ.get(ENV_BROKER_POLICY)
    return load_policy(path) if path else BrokerPolicy()


def broker_ttl(flag: float | None = None, environ: Mapping[str, str] = os.environ) -> timedelta:
    """How long a broker registration lives before it expires: seconds, flag > env > 24 h."""
    value: object = flag if flag is not None else environ.get(ENV_BROKER_TTL)
    if value is None or value == "":
        return DEFAULT_BROKER_TTL
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < 10 * 365 * 86400:
        raise ConfigurationError(f"{ENV_BROKER_TTL} must be a positive number of seconds, got {value!r}")
    return timedelta(seconds=seconds)


# -- scheduled backups (lobstore serve) -------------------------------------------------------
ENV_BACKUP_DIR = "LOBSTORE_BACKUP_DIR"  # unset: no scheduled backups
ENV_BACKUP_INTERVAL = "LOBSTORE_BACKUP_INTERVAL"  # seconds, default one day
ENV_BACKUP_KEEP_DAILY = "LOBSTORE_BACKUP_KEEP_DAILY"  # default 7
ENV_BACKUP_KEEP_WEEKLY = "LOBSTORE_BACKUP_KEEP_WEEKLY"  # default 4


def backup_dir(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    value = flag or environ.get(ENV_BACKUP_DIR)
    return Path(value) if value else None


ENV_TAKEOVER = "LOBSTORE_TAKEOVER"
DEFAULT_TAKEOVER = 2.0


def takeover(flag: float | None = None, environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between a standby replica's tries to take a duty (how soon it takes over)."""
    raw = flag if flag is not None else environ.get(ENV_TAKEOVER)
    value = _number(raw, DEFAULT_TAKEOVER)
    if not 0.1 <= value <= 300:
        raise ConfigurationError(
            f"takeover must be from 0.1 to 300 seconds (--takeover or ${ENV_TAKEOVER}), got {raw!r}"
        )
    return value


def backup_interval(flag: float | None = None, environ: Mapping[str, str] = os.environ) -> float:
    raw = flag if flag is not None else environ.get(ENV_BACKUP_INTERVAL)
    value = _number(raw, 86400.0)
    if not value >= 60:
        raise ConfigurationError(
            f"backup interval must be at least 60 seconds (--backup-interval or ${ENV_BACKUP_INTERVAL}), got {raw!r}"
        )
    return value


def backup_keep(flag: int | None, env: str, default: int, environ: Mapping[str, str] = os.environ) -> int:
    """How many daily (``env`` = ``$LOBSTORE_BACKUP_KEEP_DAILY``) or weekly backups to keep."""
    raw = flag if flag is not None else environ.get(env)
    value = _number(raw, default)
    if not (value >= 0 and float(value).is_integer()):
        raise ConfigurationError(f"{env} (or its flag) must be a whole number of backups, got {raw!r}")
    return int(value)


def _number(raw: object, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


# -- serving -----------------------------------------------------------------------------------
ENV_CPU = "LOBSTORE_CPU"  # auto (default), off, or a CPU number: the core the serving threads share


def serving_cpu(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """Where the serving threads run (lobstore/adapters/cores.py): auto, off or a CPU number."""
    from .adapters.cores import core_setting

    return core_setting(flag or environ.get(ENV_CPU), source=f"--cpu or ${ENV_CPU}")


# -- logs --------------------------------------------------------------------------------------
ENV_LOG_FORMAT = "LOBSTORE_LOG_FORMAT"  # text (default) or json
ENV_ACCESS_LOG = "LOBSTORE_ACCESS_LOG"  # on (default) or off: one INFO line per HTTP request
_SWITCH = {"1": True, "on": True, "true": True, "yes": True, "0": False, "off": False, "false": False, "no": False}


def log_format(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    value = (flag or environ.get(ENV_LOG_FORMAT) or "text").strip().lower()
    if value not in ("text", "json"):
        raise ConfigurationError(f"log format must be text or json (--log-format or ${ENV_LOG_FORMAT}), got {value!r}")
    return value


def access_log(flag: bool | None = None, environ: Mapping[str, str] = os.environ) -> bool:
    if flag is not None:
        return flag
    raw = environ.get(ENV_ACCESS_LOG, "").strip().lower()
    if raw == "":
        return True
    if raw not in _SWITCH:
        raise ConfigurationError(f"${ENV_ACCESS_LOG} must be on or off, got {raw!r}")
    return _SWITCH[raw]
