"""Opening the DuckDB file under the single-writer rule.

DuckDB lets one process at a time hold a file for writing, and no reader may hold it meanwhile.
So nobody keeps it open: the ingest writer opens it for each flush (tens of ms) and readers open
it read-only for each query. Both wait for a conflicting lock with short sleeps, up to a timeout.
Long readers (feature building) read in time chunks so the writer is never held up for long; the
writer's spool keeps its data durable while it waits (see warehouse/spool.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from core.errors import UnavailableError, UserError

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock")


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc)
    return any(m in text for m in _LOCK_MARKERS)


# A process waiting for the file retries after 5 ms, then ever less often, at least every RETRY_MAX_S.
RETRY_MAX_S = 0.05


def _open(path: Path, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise UserError(f"{path}: cannot open the warehouse: {str(exc).splitlines()[0]}") from None
            if time.monotonic() >= deadline:
                raise UnavailableError(
                    f"{path}: the warehouse stayed locked by another process for {timeout_s:.0f}s"
                ) from None
            time.sleep(delay)
            delay = min(delay * 1.5, RETRY_MAX_S)
        except duckdb.Error as exc:
            raise UserError(f"{path}: not a usable DuckDB warehouse: {str(exc).splitlines()[0]}") from None


@contextlib.contextmanager
def reading(
    path: Path, timeout_s: float = 30.0, history: tuple[int | None, int | None] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one query or a short group of queries. With ``history`` (a span
    of exchange time, None ends open) its tables also hold the rows retention moved to the lake
    for that span (warehouse/lake.py); without it, only what the DuckDB file holds."""
    if not path.exists():
        raise UserError(f"{path}: no warehouse here yet (run an ingest first, e.g. make demo)")
    con = _open(path, True, timeout_s)
    try:
        if history is not None:
            from warehouse.lake import attach

            attach(con, path.parent, *history)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def writing(path: Path, timeout_s: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection; closing it checkpoints, so readers see a complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, False, timeout_s)
    try:
        yield con
    finally:
        con.close()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...] | None:
    """The first row of a query, consuming the whole result (DuckDB 2 refuses relational calls on a
    connection with an unfinished result)."""
    rows = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    return tuple(rows[0]) if rows else None
