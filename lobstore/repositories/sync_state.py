"""Where each vault's sync stands (table ``sync_state``, one row per vault path)."""

from __future__ import annotations

import sqlalchemy as sa

from ..clock import utcnow
from ..models import SyncState
from ..schema import sync_state
from .base import Repository

_BY_VAULT = sa.select(sync_state).where(sync_state.c.vault == sa.bindparam("vault"))


class SyncStateRepository(Repository):
    def get(self, vault: str) -> SyncState:
        """The state of ``vault``; an empty state (from the start) when it never synced."""
        with self._scope.reading() as conn:
            row = conn.execute(_BY_VAULT, {"vault": vault}).first()
        if row is None:
            return SyncState()
        return SyncState(row.last_event_id, row.last_full_at, dict(row.last_cycle or {}), row.last_cost_event_id)

    def save(self, vault: str, state: SyncState) -> None:
        """Record ``state`` as the state of ``vault`` (one upsert: two processes saving the
        first state of one vault at once do not collide)."""
        values = {
            "vault": vault,
            "last_event_id": state.last_event_id,
            "last_full_at": state.last_full_at,
            "last_cycle": state.last_cycle,
            "last_cost_event_id": state.last_cost_event_id,
            "updated_at": utcnow(),
        }
        with self._scope.writing() as conn:
            self._ctx.backend.upsert(conn, sync_state, values)
