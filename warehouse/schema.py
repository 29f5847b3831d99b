"""The warehouse schema: every table is built from the specs in market.events (defined once).

``meta`` records the schema version and the snapshot depth the file was created with; a config
that asks for another depth is refused instead of silently mixing widths. Version 2 added
``clock_offsets`` (warehouse.clocks): a version-1 file gets the empty table the next time an ingest
opens it, and its stored data keeps offset 0 ("not estimated" in ``warehouse show``).
"""

from __future__ import annotations

import duckdb

from core.errors import UserError
from market.events import (
    BOOK_UPDATES,
    INGEST_RUNS,
    RAW_MESSAGES,
    SYNC_EVENTS,
    TRADES,
    TableSpec,
    snapshot_spec,
)
from warehouse.clocks import CLOCK_OFFSETS
from warehouse.db import one

SCHEMA_VERSION = "2"


def tables(levels: int) -> list[TableSpec]:
    """All tables of a warehouse whose snapshots keep ``levels`` levels."""
    return [
        RAW_MESSAGES,
        BOOK_UPDATES,
        TRADES,
        snapshot_spec(levels),
        snapshot_spec(levels, "snapshots_1s"),
        snapshot_spec(levels, "snapshots_latest"),
        SYNC_EVENTS,
        INGEST_RUNS,
        CLOCK_OFFSETS,
    ]


def ensure_schema(con: duckdb.DuckDBPyConnection, levels: int) -> None:
    """Create missing tables; refuse a file made with another snapshot depth."""
    con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    row = one(con, "SELECT value FROM meta WHERE key = 'snapshot_levels'")
    if row is not None and int(row[0]) != levels:
        raise UserError(
            f"the warehouse keeps {row[0]} snapshot levels but warehouse.snapshot_levels is {levels}; "
            "use another warehouse.path or the same depth"
        )
    for spec in tables(levels):
        con.execute(spec.ddl())
    # columns added since a table was first made (a warehouse keeps its data across versions)
    con.execute("ALTER TABLE clock_offsets ADD COLUMN IF NOT EXISTS local_time BOOLEAN DEFAULT true")
    if row is None:
        con.execute(
            "INSERT INTO meta VALUES ('snapshot_levels', ?), ('schema_version', ?)",
            [str(levels), SCHEMA_VERSION],
        )
    else:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version' AND value <> ?", [SCHEMA_VERSION] * 2)


def stored_levels(con: duckdb.DuckDBPyConnection) -> int | None:
    """The snapshot depth of an existing warehouse, or None if it has no schema yet."""
    try:
        row = one(con, "SELECT value FROM meta WHERE key = 'snapshot_levels'")
    except duckdb.CatalogException:
        return None
    return None if row is None else int(row[0])


def describe(levels: int) -> str:
    """The schema as Markdown (docs/warehouse.md is generated from this)."""
    out = [
        "# Warehouse schema",
        "",
        f"Schema version {SCHEMA_VERSION}. Generated from `market/events.py` and `warehouse/clocks.py`.",
        "",
    ]
    for spec in tables(levels):
        out += [
            f"## `{spec.name}`",
            "",
            spec.doc,
            "",
            f"Natural key: `({', '.join(spec.key)})`; rows ordered by `{spec.time_column}`.",
            "",
            "| column | type | meaning |",
            "| --- | --- | --- |",
        ]
        out += [f"| `{c.name}` | `{c.ddl_type}` | {c.doc} |" for c in spec.columns]
        out.append("")
    return "\n".join(out)
