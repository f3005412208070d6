"""Vault sync: the database rendered into the Obsidian vault, one git commit per cycle.

Needs the ``sync`` extra (Jinja2, GitPython, PyYAML). Names are imported on first use so
that ``lobstore.sync.command`` (loaded by every ``lobstore`` command) costs nothing without it.

    from lobstore.sync import SyncDaemon
    daemon = SyncDaemon(store, "/data/vault", interval=300)
    daemon.start()
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "VaultSync": "cycle",
    "CycleResult": "cycle",
    "SyncDaemon": "daemon",
    "Debouncer": "daemon",
    "SyncError": "gitops",
    "VaultBusyError": "gitops",
    "Renderer": "render",
    "FrontmatterError": "frontmatter",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
