"""Where a vault's sync stands, kept in the database (table ``sync_state``): its place in the
event feed, its last full reconcile, and its last cycle, readable by any process."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..schema import sync_state
from ..store import Store


@dataclass(frozen=True)
class SyncState:
    last_event_id: int = 0
    last_full_at: datetime | None = None
    last_cycle: dict[str, Any] = field(default_factory=dict)
    last_cost_event_id: int = 0


def load_state(store: Store, vault: str) -> SyncState:
    with store.backend.reading() as conn:
        row = conn.execute(sa.select(sync_state).where(sync_state.c.vault == vault)).first()
    return SyncState() if row is None else _state(row)


def load_states(store: Store) -> dict[str, SyncState]:
    """Where every vault synced from this database stands, by vault."""
    with store.backend.reading() as conn:
        rows = conn.execute(sa.select(sync_state)).all()
    return {row.vault: _state(row) for row in rows}


def _state(row: sa.Row) -> SyncState:
    return SyncState(row.last_event_id, row.last_full_at, dict(row.last_cycle or {}), row.last_cost_event_id)


def save_state(store: Store, vault: str, state: SyncState) -> None:
    values = {
        "last_event_id": state.last_event_id,
        "last_full_at": state.last_full_at,
        "last_cycle": state.last_cycle,
        "last_cost_event_id": state.last_cost_event_id,
        "updated_at": utcnow(),
    }
    with store.backend.writing() as conn:
        done = conn.execute(sa.update(sync_state).where(sync_state.c.vault == vault).values(values))
        if done.rowcount == 0:
            conn.execute(sa.insert(sync_state).values(vault=vault, **values))
