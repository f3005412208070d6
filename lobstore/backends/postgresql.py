"""PostgreSQL through psycopg 3: the backend for a fleet that has outgrown one machine.

The queries are the SQLite backend's; only the engine, the script runner and a JSON operator
differ. PostgreSQL serialises writers itself (row locks taken by SELECT ... FOR UPDATE in the
repositories). A rolled-back insert leaves a gap in the id sequence: ids stay unique and
increasing, not contiguous.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import URL, Connection

from ..clock import normalize
from ..errors import ConfigurationError
from .base import SqlBackend

_NOW = sa.text("SELECT statement_timestamp()")

INSTALL_HINT = "pip install 'lobstore[postgres]'"


class PostgreSQLBackend(SqlBackend):
    name = "postgresql"

    @classmethod
    def from_url(cls, url: URL, *, read_only: bool = False, **options: Any) -> PostgreSQLBackend:
        driver = url.get_driver_name()
        if url.drivername in ("postgres", "postgresql"):
            url = url.set(drivername="postgresql+psycopg")
        elif driver != "psycopg":
            raise ConfigurationError(
                f"lobstore talks to PostgreSQL through psycopg 3, not {driver!r}: "
                "use a postgresql:// or postgresql+psycopg:// URL"
            )
        if importlib.util.find_spec("psycopg") is None:
            raise ConfigurationError(
                f"the PostgreSQL backend needs the psycopg driver: {INSTALL_HINT}"
            )
        shown = url.render_as_string(hide_password=True)
        if read_only:
            # Connecting never creates a PostgreSQL database; this makes every transaction
            # refuse to write as well (added to any options the URL already carries).
            given = url.query.get("options", "")
            given = " ".join(given) if isinstance(given, tuple) else given
            url = url.update_query_dict({"options": f"{given} -c default_transaction_read_only=on".strip()})
        engine = sa.create_engine(url, pool_size=16, max_overflow=48, pool_pre_ping=True)
        backend = cls(engine, **options)
        backend._shown_url = shown
        return backend

    def _snapshot_options(self) -> dict[str, Any]:
        # READ COMMITTED (the default) gives each statement a newer snapshot; a copy of several
        # tables must see them all as of one moment.
        return {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}

    def size_bytes(self) -> int | None:
        with self.reading() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())

    def execute_script(self, conn: Connection, sql: str) -> None:
        # Without parameters psycopg sends the text as one simple query, so a file of several
        # statements (dollar-quoted function bodies included) runs as PostgreSQL parses it.
        conn.exec_driver_sql(sql)

    def reset_sequences(self, conn: Connection, tables: list[sa.Table]) -> None:
        for table in tables:
            for column in table.primary_key.columns:
                if column.autoincrement is True:  # schema.py marks generated ids explicitly
                    conn.execute(
                        sa.text(
                            "SELECT setval(pg_get_serial_sequence(:table, :column), "
                            f"coalesce((SELECT max({column.name}) FROM {table.name}), 0) + 1, false)"
                        ),
                        {"table": table.name, "column": column.name},
                    )

    def now_column(self) -> sa.ColumnElement[Any]:
        return sa.func.statement_timestamp()

    def database_now(self, conn: Connection) -> datetime:
        # statement_timestamp(): now() would be the transaction's start, before a lock wait.
        return normalize(conn.execute(_NOW).scalar_one())

    def json_list_contains(self, column: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
        return column.op("@>")(sa.cast(sa.literal([value], JSONB), JSONB))

    def _dialect_insert(self, table: sa.Table) -> Any:
        return postgresql_insert(table)

    def day_bucket(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        # Literal SQL, not bound parameters: GROUP BY must repeat the SELECT expression exactly,
        # and two placeholders ($1, $2) for the same format would not match.
        return sa.func.to_char(
            sa.func.timezone(sa.literal_column("'UTC'"), column), sa.literal_column("'YYYY-MM-DD'")
        )
