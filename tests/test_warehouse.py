"""The warehouse writer and reader: dedup, rollup, spool recovery, sampled reads, the CLI."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from core.errors import UserError
from market.events import fixed_to_numpy
from market.normalize import Normalizer
from market.venues import BYBIT
from tests.bybit_msgs import random_stream
from warehouse import reader
from warehouse.db import one, reading, writing
from warehouse.spool import Spool, read_segment
from warehouse.writer import WarehouseWriter

LEVELS = 5


def normalized(n: int, seed: int = 0, **kw: int) -> dict[str, pa.Table]:
    nz = Normalizer(BYBIT, "BTCUSDT", 0.1, LEVELS)
    out = nz.process(random_stream(n, seed, **kw))
    assert out.counts["gaps"] == 0 and out.counts["rejected"] == 0
    return out.tables


def counts(path: Path) -> dict[str, int]:
    with reading(path) as con:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("raw_messages", "book_updates", "snapshots", "snapshots_1s", "trades", "sync_events")
        }


@pytest.fixture
def wh(tmp_path: Path) -> Path:
    return tmp_path / "wh.duckdb"


def test_same_data_twice_is_stored_once(wh: Path) -> None:
    tables = normalized(3000)
    w = WarehouseWriter(wh, LEVELS)
    w.add(tables)
    w.close()
    first = counts(wh)
    assert first["snapshots"] == 3001 and first["book_updates"] == 3001 and first["trades"] > 0
    w2 = WarehouseWriter(wh, LEVELS)
    w2.add(tables)
    w2.close()
    assert counts(wh) == first
    assert sum(w2.inserted.values()) == 0


def test_overlapping_batches_and_in_batch_duplicates_are_deduplicated(wh: Path) -> None:
    tables = normalized(2000)
    halves = [
        {k: t.slice(0, t.num_rows * 2 // 3) for k, t in tables.items()},
        {k: t.slice(t.num_rows // 3) for k, t in tables.items()},
    ]
    w = WarehouseWriter(wh, LEVELS)
    for h in halves:
        w.add(h)
        w.flush()
    w.add({k: pa.concat_tables([t, t]) for k, t in tables.items()})  # every row twice in one batch
    w.close()
    c = counts(wh)
    assert c["snapshots"] == tables["snapshots"].num_rows
    assert c["trades"] == tables["trades"].num_rows
    assert c["raw_messages"] == tables["raw_messages"].num_rows
    with reading(wh) as con:
        dup = con.execute(
            "SELECT count(*) FROM (SELECT ts_exchange_ns, update_id FROM snapshots GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()[0][0]
    assert dup == 0


def test_rollup_holds_the_last_snapshot_of_each_second(wh: Path) -> None:
    tables = normalized(4000, seed=3, step_ms=7)  # ~28 s of data, several updates per ms bucket edge
    w = WarehouseWriter(wh, LEVELS)
    # in small flushes, so buckets are split across commits
    n = tables["snapshots"].num_rows
    for start in range(0, n, 333):
        w.add({"snapshots": tables["snapshots"].slice(start, 333)})
        w.flush()
    w.close()
    snaps = tables["snapshots"]
    ts = snaps.column("ts_exchange_ns").to_numpy()
    bucket = -(-ts // 1_000_000_000) * 1_000_000_000
    last_idx = {int(b): i for i, b in enumerate(bucket)}  # later rows overwrite earlier: the last one wins
    with reading(wh) as con:
        rows = con.execute("SELECT bucket_ns, ts_exchange_ns, update_id FROM snapshots_1s ORDER BY 1").fetchall()
    assert len(rows) == len(last_idx)
    uid = snaps.column("update_id").to_numpy()
    for b, t, u in rows:
        i = last_idx[b]
        assert (t, u) == (int(ts[i]), int(uid[i]))


def test_rollup_is_not_replaced_by_an_earlier_snapshot_on_reimport(wh: Path) -> None:
    tables = normalized(500)
    w = WarehouseWriter(wh, LEVELS)
    w.add({"snapshots": tables["snapshots"]})
    w.flush(wait=True)
    with reading(wh) as con:
        before = con.execute("SELECT * FROM snapshots_1s ORDER BY bucket_ns").fetchall()
    w.add({"snapshots": tables["snapshots"].slice(0, 100)})  # an earlier part again
    w.close()
    with reading(wh) as con:
        assert con.execute("SELECT * FROM snapshots_1s ORDER BY bucket_ns").fetchall() == before


def test_spool_survives_and_is_committed_by_the_next_run(wh: Path, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", "sim")
    tables = normalized(800)
    seg = spool.append(tables)
    assert seg is not None and spool.segments() == [seg]
    # a torn second segment (killed mid-write) is dropped frame by frame, the good part kept
    seg2 = spool.append({"trades": tables["trades"]})
    assert seg2 is not None
    seg2.write_bytes(seg2.read_bytes()[:-10])
    assert list(read_segment(seg2)) == []
    w = WarehouseWriter(wh, LEVELS, spool=spool)
    assert w.recover() > 0
    assert spool.segments() == []
    c = counts(wh)
    assert c["snapshots"] == 801 and c["trades"] == tables["trades"].num_rows
    assert w.recover() == 0
    w.close()


def test_spooled_flush_is_durable_before_commit(wh: Path, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", "bybit")
    w = WarehouseWriter(wh, LEVELS, spool=spool)
    tables = normalized(100)
    with writing(wh):  # another process holds the file: the commit has to wait ...
        w.add(tables)
        w.flush()
        assert len(spool.segments()) == 1  # ... but the rows are already on disk
    w.close()
    assert spool.segments() == [] and counts(wh)["snapshots"] == 101


HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])  # a writer of another process: the file is locked for everyone else
print("holding", flush=True)
sys.stdin.read()  # until the test lets go
con.close()
"""


def test_a_flush_is_on_disk_while_another_process_holds_the_warehouse(wh: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    spool = Spool(tmp_path / "spool", "bybit")
    w = WarehouseWriter(wh, LEVELS, spool=spool, lock_timeout_s=120)  # it has opened the file once: schema there
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(wh)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(UserError, match="locked|busy|another"), reading(wh, timeout_s=0.5):
            pass  # the lock is real: a reader cannot get in
        tables = normalized(100)
        w.add(tables)
        w.flush()  # returns at once: the commit waits for the file in the writer's thread ...
        segments = spool.segments()
        assert len(segments) == 1  # ... and the rows are already on disk, checksummed, readable back
        assert {n: t.num_rows for n, t in read_segment(segments[0])} == {n: t.num_rows for n, t in tables.items()}
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the other process lets go
        holder.wait(60)
    w.close()  # the waiting commit goes through
    assert spool.segments() == [] and counts(wh)["snapshots"] == 101


def test_a_different_snapshot_depth_is_refused(wh: Path) -> None:
    WarehouseWriter(wh, LEVELS).close()
    with pytest.raises(UserError, match="keeps 5 snapshot levels but warehouse.snapshot_levels is 7"):
        WarehouseWriter(wh, 7)


def test_record_run_replaces_the_row(wh: Path) -> None:
    w = WarehouseWriter(wh, LEVELS)
    row = {
        "run_id": "r1",
        "source": "sim",
        "detail": "",
        "started_ns": 1,
        "ended_ns": 0,
        "status": "running",
        "messages": 0,
        "book_updates": 0,
        "trades": 0,
        "rejected": 0,
        "gaps": 0,
    }
    w.record_run(row)
    w.record_run({**row, "status": "completed", "messages": 9})
    w.close()
    with reading(wh) as con:
        assert con.execute("SELECT status, messages FROM ingest_runs").fetchall() == [("completed", 9)]


def test_reading_a_missing_warehouse_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no warehouse here yet"), reading(tmp_path / "none.duckdb"):
        pass


def test_reading_a_corrupt_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="warehouse"), reading(bad):
        pass


# -- sampled reads -------------------------------------------------------------------------------


@pytest.fixture
def filled(wh: Path) -> Path:
    w = WarehouseWriter(wh, LEVELS)
    w.add(normalized(3000, seed=5, step_ms=13, pause_every=700, pause_ms=4500))
    w.close()
    return wh


def brute_asof(wh: Path, grid: np.ndarray) -> list[tuple[int, float]]:
    with reading(wh) as con:
        t = con.sql("SELECT ts_exchange_ns, update_id, bid_px FROM snapshots ORDER BY 1, 2").to_arrow_table()
    ts = t.column("ts_exchange_ns").to_numpy()
    bid = fixed_to_numpy(t.column("bid_px"), LEVELS)[:, 0]
    pos = np.searchsorted(ts, grid, side="right") - 1
    return [(int(ts[p]), float(bid[p])) for p in pos if p >= 0]


@pytest.mark.parametrize("every_ms", [1000, 3000, 250, 1700])
def test_sampled_snapshots_equal_a_brute_force_asof(filled: Path, every_ms: int) -> None:
    every = every_ms * 1_000_000
    with reading(filled) as con:
        first, last = reader.time_bounds(con, "bybit", "BTCUSDT")
        start = -(-first // every) * every
        got = reader.sampled_snapshots(con, "bybit", "BTCUSDT", 3, every, start, last).fetchall()
    grid = np.arange(start, last + 1, every)
    want = brute_asof(filled, grid)
    assert [(r[1], r[3]) for r in got] == want
    assert [r[0] for r in got] == grid[len(grid) - len(want) :].tolist()


def test_sampling_before_the_data_starts_gives_no_rows(filled: Path) -> None:
    with reading(filled) as con:
        first, _ = reader.time_bounds(con, "bybit", "BTCUSDT")
        start = (first // 10**9 - 5) * 10**9
        rows = reader.sampled_snapshots(con, "bybit", "BTCUSDT", 1, 10**9, start, start + 10 * 10**9).fetchall()
    grid = range(start, start + 10 * 10**9 + 1, 10**9)
    assert [r[0] for r in rows] == [g for g in grid if g >= first]


def test_latest_snapshot_is_the_last_update(filled: Path) -> None:
    with reading(filled) as con:
        row = reader.latest_snapshot(con, "bybit", "BTCUSDT", 2).to_pylist()[0]
        last = con.execute("SELECT max(ts_exchange_ns) FROM snapshots").fetchall()[0][0]
    assert row["ts_exchange_ns"] == last and set(row) >= {"bid_px_1", "ask_qty_2"}


def test_latest_book_follows_the_newest_update_and_ignores_older_batches(tmp_path: Path) -> None:
    msgs = random_stream(300, seed=9)
    path = tmp_path / "wh.duckdb"
    norm = Normalizer(BYBIT, "BTCUSDT", 0.1, LEVELS)
    first, second = norm.process(msgs[:200]), norm.process(msgs[200:])
    writer = WarehouseWriter(path, LEVELS)
    writer.commit_tables(second.tables)
    writer.commit_tables(first.tables)  # an older batch arriving late must not roll the book back
    with reading(path) as con:
        book = reader.latest_book(con, "bybit", "BTCUSDT", LEVELS)
        want = con.sql(
            "SELECT ts_exchange_ns, bid_px, ask_qty FROM snapshots ORDER BY ts_exchange_ns DESC, update_id DESC LIMIT 1"
        ).fetchall()[0]
        n = one(con, "SELECT count(*) FROM snapshots_latest")
    assert book.ts_ex == want[0]
    assert book.bid_px.tolist() == list(want[1]) and book.ask_qty.tolist() == list(want[2])
    assert n == (1,)


def test_silences_are_measured_exactly(filled: Path) -> None:
    with reading(filled) as con:
        n, longest = reader.silences(con, 2_000_000_000)
    assert n == 4  # pauses after every 700 of 3000 deltas
    assert all(4.5 <= s.seconds < 4.6 for s in longest)


def test_pick_pair_explains_what_is_stored(filled: Path) -> None:
    with reading(filled) as con:
        assert reader.pick_pair(con, None, None, ("x", "y")) == ("bybit", "BTCUSDT")
        with pytest.raises(UserError, match=r"stored: bybit/BTCUSDT"):
            reader.pick_pair(con, "binance-usdm", None, ("bybit", "BTCUSDT"))


def test_empty_warehouse_has_no_pairs(wh: Path) -> None:
    WarehouseWriter(wh, LEVELS).close()
    with reading(wh) as con, pytest.raises(UserError, match="no snapshots yet"):
        reader.pick_pair(con, None, None, ("bybit", "BTCUSDT"))


def test_duckdb_file_is_closed_between_flushes(wh: Path) -> None:
    w = WarehouseWriter(wh, LEVELS)
    w.add(normalized(50))
    w.flush(wait=True)
    duckdb.connect(str(wh), read_only=True).close()  # would raise if the writer still held the lock
    w.close()


def test_commits_store_whole_flushes_up_to_the_row_limit(tmp_path: Path) -> None:
    tables = normalized(600, seed=2)
    flushes = [{k: t.slice(i * t.num_rows // 6, t.num_rows // 6 + 1) for k, t in tables.items()} for i in range(6)]
    for limit, commits in ((1, 6), (None, None)):
        path = tmp_path / f"wh{limit}.duckdb"
        w = WarehouseWriter(path, LEVELS, max_commit_rows=limit)
        for f in flushes:  # flushed faster than committed: they queue behind the first commit
            w.add(f)
            w.flush()
        w.close()
        assert commits is None or w.commits == commits
        assert counts(path)["snapshots"] == tables["snapshots"].num_rows


def test_rows_are_taken_from_a_chunked_table_without_joining_its_chunks() -> None:
    from warehouse.writer import _take

    snaps = normalized(300, seed=4)["snapshots"]
    chunked = pa.concat_tables([snaps.slice(0, 0), snaps.slice(0, 100), snaps.slice(100, 0), snaps.slice(100)])
    for rows in (np.array([299, 0, 150, 99, 100, 5]), np.arange(300)[::-3], np.array([], np.int64)):
        got, want = _take(chunked, rows), snaps.take(pa.array(rows, pa.int64()))
        assert got.num_rows == want.num_rows
        for name in snaps.column_names:
            a, b = got.column(name).combine_chunks(), want.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(a.type):
                a, b = a.flatten(), b.flatten()
            x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name  # NaN: a missing level
