"""Opening the DuckDB file under the single-writer rule.

DuckDB lets one process at a time hold a file for writing, and no reader may hold it meanwhile.
So nobody keeps it open: the ingest writer opens it for each flush (a few ms) and readers open
it read-only for each query. Both wait for a conflicting lock with short sleeps, up to a timeout.
Long readers (feature building) read in time chunks so the writer is never held up for long; the
writer's spool keeps its data durable while it waits (see warehouse/spool.py).

"Opening" is an ATTACH to one in-memory DuckDB instance the process keeps for its life, and closing
a DETACH (which checkpoints a written file and lets it go). A new instance per use, as
``duckdb.connect(path)`` makes, cost 17-20 ms of CPU each time (DuckDB builds its catalog of
functions for every instance) against 0.5 ms for an attach: a query, and the live ingest's flush
twice a second, paid it every time. Within the process, users of one file share its attach (a
reader reads through the writer's; a writer waits for the process's own readers of a read-only
attach to finish); each gets a connection of its own with the file as its default database.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass
class _Attached:
    alias: str
    read_only: bool
    users: int = 0


class _Instance:
    """The process's DuckDB instance and the files attached to it (one per file, shared)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        # an in-memory instance spills to ./.tmp unless told: a folder of the process's own instead
        spill = Path(tempfile.gettempdir()) / f"l2-duckdb-{self.pid}"
        self.con = duckdb.connect(":memory:", config={"temp_directory": str(spill)})
        self.files: dict[str, _Attached] = {}
        self.changed = threading.Condition()
        self._names = itertools.count(1)
        atexit.register(self.close)

    def close(self) -> None:
        """At exit: detach (a written file is checkpointed) and close, before the interpreter's
        teardown (DuckDB's binding reports instances still alive then as leaked)."""
        if self.changed.acquire(timeout=5):  # never hang an exit on a thread stuck in a use
            try:
                self.con.close()
                del self.con  # the binding's objects it holds go now, not after the binding is torn down
            finally:
                self.changed.release()

    def attach(self, path: Path, read_only: bool, timeout_s: float) -> tuple[str, _Attached]:
        key = os.path.abspath(path)
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        with self.changed:
            while True:
                held = self.files.get(key)
                if held is not None and (read_only or not held.read_only):
                    held.users += 1
                    return key, held
                if held is None:
                    alias = f"warehouse_{next(self._names)}"
                    mode = " (READ_ONLY)" if read_only else ""
                    try:
                        self.con.execute(f"ATTACH '{_q(key)}' AS \"{alias}\"{mode}")
                    except duckdb.IOException as exc:
                        if not _is_lock_error(exc):
                            raise UserError(f"{path}: cannot open the warehouse: {_first_line(exc)}") from None
                    except duckdb.Error as exc:
                        raise UserError(f"{path}: not a usable DuckDB warehouse: {_first_line(exc)}") from None
                    else:
                        self.files[key] = held = _Attached(alias, read_only, 1)
                        return key, held
                    wait = delay  # another process holds the file: try again soon
                    delay = min(delay * 1.5, RETRY_MAX_S)
                else:
                    wait = RETRY_MAX_S  # a writer waits for this process's readers (woken when they end)
                if time.monotonic() >= deadline:
                    who = "another process" if held is None else "this process's readers"
                    raise UnavailableError(
                        f"{path}: the warehouse stayed locked by {who} for {timeout_s:.0f}s"
                    ) from None
                self.changed.wait(wait)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the instance (the instance's own one is used under the lock only)."""
        with self.changed:
            return self.con.cursor()

    def others(self) -> set[str]:
        """The databases attached to the instance besides the warehouse files it manages."""
        with self.changed:
            ours = {a.alias for a in self.files.values()}
            rows = self.con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall()
            return {str(r[0]) for r in rows} - ours

    def detach_others(self, before: set[str]) -> None:
        """Detach what a user attached on its connection (``ATTACH 'x' AS ref``), as closing a
        connection of its own did: the instance outlives the use."""
        with self.changed:
            for name in self.others() - before:
                self.con.execute(f'DETACH DATABASE IF EXISTS "{name}"')

    def release(self, key: str) -> None:
        with self.changed:
            held = self.files[key]
            held.users -= 1
            if held.users > 0:
                return
            try:
                self.con.execute(f'DETACH "{held.alias}"')  # a written file is checkpointed here
                del self.files[key]  # (a detach that failed leaves it attached: the next user takes it)
            finally:
                self.changed.notify_all()


class _Process:
    """The process's instance, made on first use (and again in a forked child, which must not use
    its parent's: nothing in the project forks after using the warehouse, and no test holds this)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instance: _Instance | None = None

    def get(self) -> _Instance:
        with self.lock:
            if self.instance is None or self.instance.pid != os.getpid():
                self.instance = _Instance()
            return self.instance


_PROCESS = _Process()


def _q(text: str) -> str:
    return text.replace("'", "''")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0]


@contextlib.contextmanager
def _connected(path: Path, read_only: bool, timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    db = _PROCESS.get()
    key, held = db.attach(path, read_only, timeout_s)
    try:
        con = db.cursor()
        before = db.others()
        try:
            con.execute(f'USE "{held.alias}"')
            yield con
        finally:
            con.close()
            db.detach_others(before)
    finally:
        db.release(key)


@contextlib.contextmanager
def reading(
    path: Path, timeout_s: float = 30.0, history: tuple[int | None, int | None] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one query or a short group of queries. With ``history`` (a span
    of exchange time, None ends open) its tables also hold the rows retention moved to the lake
    for that span (warehouse/lake.py); without it, only what the DuckDB file holds."""
    if not path.exists():
        raise UserError(f"{path}: no warehouse here yet (run an ingest first, e.g. make demo)")
    with _connected(path, True, timeout_s) as con:
        if history is not None:
            from warehouse.lake import attach

            attach(con, path.parent, *history)
        yield con


@contextlib.contextmanager
def writing(path: Path, timeout_s: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection; when the last user of the file in this process is done, the file is
    checkpointed and let go, so readers see a complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _connected(path, False, timeout_s) as con:
        yield con


def one(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...] | None:
    """The first row of a query, consuming the whole result (DuckDB 2 refuses relational calls on a
    connection with an unfinished result)."""
    rows = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    return tuple(rows[0]) if rows else None
