"""warehouse/db.py: one DuckDB instance per process, the file attached for each use and let go after."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import UnavailableError, UserError
from warehouse.db import one, reading, writing

HOLD = """
import sys, time
import duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
"""


def _rows(path: Path) -> int:
    with reading(path) as con:
        row = one(con, "SELECT count(*) FROM t")
    assert row is not None
    return int(row[0])


def _make(path: Path, n: int = 2) -> None:
    with writing(path) as con:
        con.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        con.execute(f"INSERT INTO t SELECT * FROM range({n})")


def test_the_file_is_let_go_after_each_use_and_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _make(path)
    assert not Path(f"{path}.wal").exists()  # the write is in the file itself: any reader sees all of it
    out = subprocess.run(
        [sys.executable, "-c", f"import duckdb; print(duckdb.connect('{path}').execute('SELECT count(*) FROM t').fetchall())"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(2,)]"


def test_a_file_another_process_holds_is_waited_for_then_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _make(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(UnavailableError, match="locked by another process"), reading(path, timeout_s=0.2):
            pass
    finally:
        holder.communicate("\n", timeout=60)
    assert _rows(path) == 2  # let go: the next use gets it


def test_a_reader_inside_a_writer_of_the_same_process_reads_through_it(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _make(path)
    with writing(path) as w:
        w.execute("INSERT INTO t VALUES (7)")
        with reading(path) as r:
            assert one(r, "SELECT count(*) FROM t") == (3,)
    assert _rows(path) == 3


def test_a_writer_waits_for_the_readers_of_its_own_process(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _make(path)
    reading_now, done = threading.Event(), threading.Event()

    def reader() -> None:
        with reading(path) as con:
            con.execute("SELECT count(*) FROM t").fetchall()
            reading_now.set()
            done.wait(60)

    t = threading.Thread(target=reader)
    t.start()
    assert reading_now.wait(60)
    with pytest.raises(UnavailableError, match="this process's readers"), writing(path, timeout_s=0.2):
        pass
    wrote = threading.Event()

    def writer() -> None:
        with writing(path, timeout_s=60) as con:
            con.execute("INSERT INTO t VALUES (9)")
        wrote.set()

    w = threading.Thread(target=writer)
    w.start()
    assert not wrote.wait(0.3)  # still held by the reader
    done.set()
    t.join(60)
    w.join(60)
    assert wrote.is_set() and _rows(path) == 3


def test_what_a_use_attaches_on_its_connection_goes_with_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    _make(a)
    _make(b, 5)
    for _ in range(2):  # the second time the name is free again
        with reading(a) as con:
            con.execute(f"ATTACH '{b}' AS other (READ_ONLY)")
            assert one(con, "SELECT count(*) FROM other.t") == (5,)
    with writing(b) as con:  # and the file it attached is not held read-only by the process
        con.execute("INSERT INTO t VALUES (1)")
    assert _rows(b) == 6


def test_a_file_that_is_not_a_warehouse_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a database" * 500)
    with pytest.raises(UserError, match="cannot open the warehouse") as err, reading(bad):
        pass
    assert "\n" not in str(err.value)
    good = tmp_path / "w.duckdb"
    _make(good)
    assert _rows(good) == 2  # the failed attach left nothing behind
