"""The tables, as SQLAlchemy Core objects.

These build queries; they never create tables. The schema itself comes from the SQL files in
``migrations/`` and a guard test checks that what the migrations build matches this module.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, JSONB

from .clock import normalize

metadata = sa.MetaData()
# Generated ids are marked autoincrement=True explicitly: `lobstore copy` resets their sequences.
# Tables that a migration fills with rows say info={"seeded": True}: a new database is not
# empty there, and `lobstore copy` replaces those rows with the source's.


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

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        # SQLite hands back its text: one C parse, where the generic path runs a regex and then
        # converts the zone (a list of 50 tasks reads 300 timestamps).
        if dialect.name == "sqlite":
            return _sqlite_utc
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from an expression SQLite did not type
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _sqlite_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is None:  # stored naive: UTC by construction
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# 64-bit ids on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid (already 64-bit).
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SecondsType = sa.Float().with_variant(DOUBLE_PRECISION(), "postgresql")

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
    sa.Column("metadata", JSONType, nullable=False),  # keys without a column (0005)
    # The lifecycle clock (lobstore.lifecycle): attempts, the lease, review, the warning.
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer),
    sa.Column("lease_expires_at", UTCDateTime),
    sa.Column("review_pr", sa.Text),
    sa.Column("timeout_warned_at", UTCDateTime),
    sa.Index("ix_tasks_status_id", "status", "id"),
    sa.Index("ix_tasks_type_id", "type", "id"),
    sa.Index("ix_tasks_assigned_to", "assigned_to"),
    sa.Index("ix_tasks_created_at", "created_at"),
    sa.Index("ix_tasks_updated_at", "updated_at"),
    sa.Index("ix_tasks_slug", "slug"),  # lobwife's lookups by slug and name (0009)
    sa.Index("ix_tasks_name", "name"),
)

task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("task_id", IdType, sa.ForeignKey("tasks.id")),  # NULL: a feed event of no task (0016)
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
    sa.Column("last_cost_event_id", IdType, nullable=False),
)

# Money is integer micro-dollars; prices are micro-dollars per million tokens (exact arithmetic).
model_prices = sa.Table(
    "model_prices",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("effective_from", UTCDateTime, nullable=False),
    sa.Column("input_micro_per_mtok", sa.BigInteger, nullable=False),
    sa.Column("output_micro_per_mtok", sa.BigInteger, nullable=False),
    sa.Column("cache_read_micro_per_mtok", sa.BigInteger, nullable=False),
    sa.Column("cache_write_micro_per_mtok", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("model", "effective_from"),
    info={"seeded": True},  # a migration inserts rows: `lobstore copy` replaces them with the source's
)

_COST_SUMS = ("model", "cost_micro", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
cost_events = sa.Table(
    "cost_events",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("task_id", IdType, sa.ForeignKey("tasks.id")),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("agent", sa.Text),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("cache_read_tokens", sa.Integer, nullable=False),
    sa.Column("cache_write_tokens", sa.Integer, nullable=False),
    sa.Column("cost_micro", sa.BigInteger),  # NULL: uncosted (no reported cost, no price)
    sa.Column("cost_source", sa.Text, nullable=False),  # reported | computed | uncosted
    sa.Column("price_id", IdType, sa.ForeignKey("model_prices.id")),
    sa.Column("request_id", sa.Text, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Covering: summaries and task totals are answered from the index alone.
    sa.Index("ix_cost_events_created_at", "created_at", *_COST_SUMS),
    sa.Index("ix_cost_events_task_id", "task_id", *_COST_SUMS),
)

# Hourly sums per model, maintained with every insert into cost_events (see repositories/costs.py).
cost_rollups = sa.Table(
    "cost_rollups",
    metadata,
    sa.Column("hour", UTCDateTime, primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("cost_micro", sa.BigInteger, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("costed_events", sa.BigInteger, nullable=False),
)

# Retention: the numbers of pruned cost events per hour, model, task and agent (task_id
# 0 and agent '' for none: key columns), and each prune run with its horizon.
cost_archive = sa.Table(
    "cost_archive",
    metadata,
    sa.Column("hour", UTCDateTime, primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("task_id", IdType, primary_key=True, autoincrement=False),
    sa.Column("agent", sa.Text, primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in (
        "cost_micro", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "events", "costed_events")),
    sa.Index("ix_cost_archive_task_id", "task_id"),
)

cost_prune_runs = sa.Table(
    "cost_prune_runs",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("horizon", UTCDateTime, nullable=False),  # raw events before it are pruned
    sa.Column("actor", sa.Text),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("batches", sa.BigInteger, nullable=False),
    sa.Column("longest_hold_ms", SecondsType, nullable=False),
    sa.Column("idempotency_keys", sa.BigInteger, nullable=False),
    sa.Column("token_audit_rows", sa.BigInteger, nullable=False),
)

# Re-pricing runs: table-priced events recomputed with the price table as it is now.
cost_reprice_runs = sa.Table(
    "cost_reprice_runs",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("until", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("price_ids", JSONType, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("changed_events", sa.BigInteger, nullable=False),
    sa.Column("old_micro", sa.BigInteger, nullable=False),
    sa.Column("new_micro", sa.BigInteger, nullable=False),
)

# Budgets: limits per task, task type, model, agent or fleet, per period; the spend of
# each period counted at ingest; each 80 % / 100 % crossing once per period (the unique key).
budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.Text, nullable=False),  # task | task_type | model | agent | fleet
    sa.Column("target", sa.Text),  # the task type, model or agent (NULL for task and fleet)
    sa.Column("task_id", IdType, sa.ForeignKey("tasks.id")),
    sa.Column("period", sa.Text, nullable=False),  # day | week | month | total
    sa.Column("limit_micro", sa.BigInteger, nullable=False),
    sa.Column("hard", sa.Boolean, nullable=False),
    sa.Column("actor", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("removed_at", UTCDateTime),
)

budget_spend = sa.Table(
    "budget_spend",
    metadata,
    sa.Column("budget_id", IdType, sa.ForeignKey("budgets.id"), primary_key=True),
    sa.Column("period_start", UTCDateTime, primary_key=True),
    sa.Column("spent_micro", sa.BigInteger, nullable=False),
    sa.Column("limit_micro", sa.BigInteger, nullable=False),  # the budget's: ingest checks it without a join
)

budget_alerts = sa.Table(
    "budget_alerts",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("budget_id", IdType, sa.ForeignKey("budgets.id"), nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=False),
    sa.Column("threshold", sa.Integer, nullable=False),  # 80 or 100 (per cent)
    sa.Column("spent_micro", sa.BigInteger, nullable=False),
    sa.Column("limit_micro", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("budget_id", "period_start", "threshold"),
)

audit_findings = sa.Table(
    "audit_findings",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("audit_type", sa.Text, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("target", sa.Text),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("occurrences", sa.Integer, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("resolution", sa.Text),
    sa.Column("resolved_by", sa.Text),
    sa.Column("fix_task_id", IdType, sa.ForeignKey("tasks.id")),
    # One live (open or ignored) finding per fingerprint: a recurrence updates it.
    sa.Index(
        "ux_audit_findings_live_fingerprint", "audit_type", "fingerprint", unique=True,
        sqlite_where=sa.text("status <> 'resolved'"), postgresql_where=sa.text("status <> 'resolved'"),
    ),
    sa.Index("ix_audit_findings_status_id", "status", "id"),
    sa.Index("ix_audit_findings_last_seen_at", "last_seen_at"),
)

broker_tasks = sa.Table(
    "broker_tasks",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    # A task's registration (one per task), or a standalone one under the name it was
    # registered as (lobwife kept those for ids that name no task, e.g. "verify-test") (0009).
    sa.Column("task_id", IdType, sa.ForeignKey("tasks.id")),
    sa.Column("name", sa.Text),
    sa.Column("repos", JSONType, nullable=False),
    sa.Column("lobster_type", sa.Text),
    sa.Column("registered_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("token_count", sa.Integer, nullable=False),
    sa.CheckConstraint("(task_id IS NULL) <> (name IS NULL)", name="ck_broker_tasks_task_or_name"),
    sa.Index("ux_broker_tasks_task_id", "task_id", unique=True),
    sa.Index("ux_broker_tasks_name", "name", unique=True),
    sa.Index("ix_broker_tasks_status_expires_at", "status", "expires_at"),
)

# Only a hash of each secret is stored. task_id set: a task credential (acts for that task
# only, lives as long as its registration). Names are unique among live, non-task credentials.
credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.Text, nullable=False, unique=True),
    sa.Column("scopes", JSONType, nullable=False),
    sa.Column("task_id", IdType, sa.ForeignKey("tasks.id")),
    sa.Column("created_by", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
    sa.Index(
        "ux_credentials_live_name", "name", unique=True,
        sqlite_where=sa.text("revoked_at IS NULL AND task_id IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL AND task_id IS NULL"),
    ),
    sa.Index("ix_credentials_task_id", "task_id"),
)

token_audit = sa.Table(
    "token_audit",
    metadata,
    sa.Column("id", IdType, primary_key=True, autoincrement=True),
    sa.Column("task_id", IdType, sa.ForeignKey("tasks.id")),
    # The name when the entry is about no task of this store: an old broker's id for an
    # imported entry, a standalone registration's name, or a service's name.
    sa.Column("legacy_task_id", sa.Text),
    sa.Column("repos", JSONType, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("credential_id", IdType, sa.ForeignKey("credentials.id")),  # who asked (NULL: auth off)
    sa.Index("ix_token_audit_task_id_id", "task_id", "id"),
    sa.Index("ix_token_audit_legacy_task_id", "legacy_task_id"),
)

job_state = sa.Table(
    "job_state",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("schedule", sa.Text),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("last_run", UTCDateTime),
    sa.Column("last_status", sa.Text),
    sa.Column("last_duration", SecondsType),
    sa.Column("last_output", sa.Text),
    sa.Column("run_count", sa.Integer, nullable=False),
    sa.Column("fail_count", sa.Integer, nullable=False),
    # Written by the scheduler (lobstore.cron) from the jobs file and as it runs jobs.
    sa.Column("command", sa.Text),
    sa.Column("concurrency", sa.Text),
    sa.Column("timeout", SecondsType),
    sa.Column("last_exit_code", sa.Integer),
    sa.Column("skip_count", sa.Integer, nullable=False),
    sa.Column("last_skipped_at", UTCDateTime),
    sa.Column("next_run", UTCDateTime),
    sa.Column("running_since", UTCDateTime),
    sa.Column("trigger_requested_at", UTCDateTime),
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
