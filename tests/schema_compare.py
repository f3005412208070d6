"""Describe a schema the same way from a live database and from lobstore.schema, so a test
can compare what the migrations built with what the code believes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def _type(type_: Any, dialect: sa.Dialect) -> str:
    return str(type_.compile(dialect=dialect)).upper()


def from_database(engine: sa.Engine) -> dict[str, Any]:
    inspector = sa.inspect(engine)
    dialect = engine.dialect
    schema: dict[str, Any] = {}
    for table in inspector.get_table_names():
        primary_key = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
        schema[table] = {
            # SQLite reports primary-key columns as nullable; a primary key never holds NULL.
            "columns": {
                col["name"]: (_type(col["type"], dialect), col["nullable"] and col["name"] not in primary_key)
                for col in inspector.get_columns(table)
            },
            "primary_key": primary_key,
            "indexes": {
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
                if not ix.get("duplicates_constraint")
            },
            "unique": {tuple(uc["column_names"]) for uc in inspector.get_unique_constraints(table)},
            "foreign_keys": {
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                for fk in inspector.get_foreign_keys(table)
            },
        }
    return schema


def from_metadata(metadata: sa.MetaData, dialect: sa.Dialect) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for table in metadata.tables.values():
        schema[table.name] = {
            "columns": {
                col.name: (_type(col.type, dialect), bool(col.nullable) and not col.primary_key)
                for col in table.columns
            },
            "primary_key": tuple(col.name for col in table.primary_key.columns),
            "indexes": {
                (ix.name, tuple(col.name for col in ix.columns), bool(ix.unique)) for ix in table.indexes
            },
            "unique": {
                tuple(col.name for col in c.columns)
                for c in table.constraints
                if isinstance(c, sa.UniqueConstraint)
            },
            "foreign_keys": {
                ((fk.parent.name,), fk.column.table.name, (fk.column.name,)) for fk in table.foreign_keys
            },
        }
    return schema
