"""The tables, as SQLAlchemy Core objects.

These build queries; they never create tables. The schema itself comes from the SQL files in
``migrations/`` and a guard test checks that what the migrations build matches this module.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from .clock import normalize

metadata = sa.MetaData()
# Generated ids are marked autoincrement=True explicitly: `lobstore copy` resets their sequences.


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in and out, whatever the database keeps.

    SQLite has no timezone-aware type: values are stored as naive UTC text, which still sorts
    and compares correctly. PostgreSQL gets ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = normalize(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from an expression SQLite did not type
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# 64-bit ids on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid (already 64-bit).
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("slug", sa.Text),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("model", sa.Text),
    sa.Column("assigned_to", sa.Text),
    sa.Column("repos", JSONType, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("discord_thread_id", sa.Text),
    sa.Column("estimate_minutes", sa.Integer),
    sa.Column("requires_qa", sa.Boolean, nullable=False),
    sa.Column("workflow", sa.Text),
    sa.Column("tags", JSONType, nullable=False),
    sa.Column("legacy_id", sa.Text, unique=True),
    sa.Column("vault_path", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("queued_at", UTCDateTime),
    sa.Column("assigned_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_tasks_status_id", "status", "id"),
    sa.Index("ix_tasks_type_id", "type", "id"),
    sa.Index("ix_tasks_assigned_to", "assigned_to"),
    sa.Index("ix_tasks_created_at", "created_at"),
    sa.Index("ix_tasks_updated_at", "updated_at"),
)

task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("task_id", IdType, sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("actor", sa.Text),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_task_events_task_id_id", "task_id", "id"),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("vault", sa.Text, primary_key=True),
    sa.Column("last_event_id", IdType, nullable=False),
    sa.Column("last_full_at", UTCDateTime),
    sa.Column("last_cycle", JSONType, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("response_status", sa.Integer),  # NULL only inside the claiming transaction
    sa.Column("response_headers", JSONType, nullable=False),
    sa.Column("response_body", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("idempotency_key", "method", "path"),
    sa.Index("ix_idempotency_keys_expires_at", "expires_at"),
)
