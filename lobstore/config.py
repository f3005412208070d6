"""Settings: flags win over environment variables, which win over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_URL = "sqlite:///lobstore.db"

ENV_URL = "LOBSTORE_URL"
ENV_ID_PREFIX = "LOBSTORE_ID_PREFIX"


def database_url(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The database URL: ``--db``, else ``$LOBSTORE_URL``, else ``lobstore.db`` here."""
    return flag or environ.get(ENV_URL) or DEFAULT_URL


def id_prefix(flag: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    return flag or environ.get(ENV_ID_PREFIX) or "T"
