"""Recording clocks: the offset is estimated per file at import, stored, shown, and corrects replays.

Two hand-made Binance recordings whose recorder clock runs behind the exchange by a known amount
plus a known jitter: every expected figure below is computed by hand from those lists.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from core.config import AppConfig
from market.sources.files import FileSource
from pipelines.replay import load_market
from tests.conftest import REPO, ConfigFactory
from warehouse import clocks
from warehouse.db import reading, writing
from warehouse.ingest import run_ingest

MS = 1_000_000
T0 = 1_721_347_200_000  # 2024-07-19 00:00:00 UTC, in ms

# (kind, exchange time in ms after T0, jitter in ms): the recorder stamps exchange time - behind + jitter
FILE_A = [("snap", 0, 4), ("diff", 100, 9), ("trade", 150, 2), ("diff", 200, 6), ("trade", 250, 3), ("diff", 300, 11),
          ("trade", 350, 5)]  # fmt: skip
BEHIND_A = 1_500  # ms: offset = 1500 - min jitter 2 = 1498 ms
FILE_B = [("diff", 5_000, 7), ("trade", 5_050, 3), ("diff", 5_100, 8), ("trade", 5_150, 5)]
BEHIND_B = 1_200  # ms: offset = 1200 - 3 = 1197 ms


def write_recording(path: Path, events: list[tuple[str, int, int]], behind_ms: int, first_u: int) -> Path:
    """A Binance USD-M recording: ``<local ns> <json>`` lines, the depth diffs chained from ``first_u``."""
    lines = []
    u = first_u
    for n, (kind, t, jitter) in enumerate(events):
        ts = T0 + t
        local = ts * MS - behind_ms * MS + jitter * MS
        if kind == "snap":
            body = {"lastUpdateId": u, "E": ts, "T": ts, "bids": [["100.0", "1.0"]], "asks": [["100.1", "1.0"]]}
        elif kind == "diff":
            qty = f"{1 + n % 3}.0"
            data = {"e": "depthUpdate", "E": ts, "T": ts, "s": "BTCUSDT", "U": u + 1, "u": u + 1, "pu": u,
                    "b": [["100.0", qty]], "a": []}  # fmt: skip
            u += 1
            body = {"stream": "btcusdt@depth@0ms", "data": data}
        else:
            data = {"e": "trade", "E": ts, "T": ts, "s": "BTCUSDT", "t": first_u * 100 + n, "p": "100.1",
                    "q": "0.010", "X": "MARKET", "m": False}  # fmt: skip
            body = {"stream": "btcusdt@trade", "data": data}
        lines.append(f"{local} {orjson.dumps(body).decode()}\n")
    with gzip.open(path, "wt") as f:
        f.writelines(lines)
    return path


def binance(cfg: AppConfig) -> AppConfig:
    """The config with the recordings' venue as the instrument's (load_market reads the configured pair)."""
    return cfg.model_copy(update={"instrument": cfg.instrument.model_copy(update={"venue": "binance-usdm"})})


@pytest.fixture
def recordings(tmp_path: Path) -> list[Path]:
    return [
        write_recording(tmp_path / "btcusdt_a.gz", FILE_A, BEHIND_A, 1000),
        # file B's diffs follow file A's last update id (1003): one book across both files
        write_recording(tmp_path / "btcusdt_b.gz", FILE_B, BEHIND_B, 1003),
    ]


def test_offset_is_the_low_quantile_of_local_minus_exchange() -> None:
    # 2,001 latencies: two corrupt stamps 5 s and 3 s early, then -1.000 ms .. +0.998 ms in 1 us steps
    lat = np.array([-5_000 * MS, -3_000 * MS] + [-MS + k * 1_000 for k in range(1_999)], np.int64)
    np.random.default_rng(3).shuffle(lat)
    est = clocks.estimate_offset(lat, 0.001)  # the floor(0.001 * 2000) = 2nd (0-based) smallest: -1 ms
    assert (est.samples, est.q_ns, est.offset_ns, est.min_ns) == (2_001, -MS, MS, -5_000 * MS)
    assert est.clamped == 2  # the corrupt two are read at zero latency instead of moving everything by 5 s
    assert est.median_ns == -MS + 998 * 1_000  # the floor(0.5 * 2000) = 1000th smallest
    ahead = clocks.estimate_offset(np.array([3 * MS, 5 * MS, 40 * MS]))
    assert ahead.offset_ns == 0 and ahead.clamped == 0  # a clock not provably behind is left alone
    with pytest.raises(ValueError):
        clocks.estimate_offset(np.zeros(0, np.int64))


def test_import_estimates_one_offset_per_file_and_replays_keep_the_jitter(
    make_config: ConfigFactory, recordings: list[Path]
) -> None:
    cfg = binance(make_config(warehouse={"snapshot_levels": 2}))
    result = run_ingest(FileSource(recordings), cfg, detail="two files")
    assert result.status == "completed", result.error
    assert result.counts["book_updates"] == 6 and result.counts["trades"] == 5
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        segs = clocks.segments(con)
        raw_local = con.execute("SELECT min(ts_local_ns - ts_exchange_ns) FROM book_updates").fetchone()
    assert [s.segment for s in segs] == ["btcusdt_a.gz", "btcusdt_b.gz"]
    a, b = segs[0].estimate, segs[1].estimate
    assert (a.samples, a.offset_ns, a.min_ns, a.median_ns, a.clamped) == (7, 1_498 * MS, -1_498 * MS, -1_495 * MS, 0)
    assert (b.samples, b.offset_ns, b.min_ns, b.median_ns, b.clamped) == (4, 1_197 * MS, -1_197 * MS, -1_195 * MS, 0)
    assert raw_local == (-1_496 * MS,)  # the stored local times stay as recorded (book events of file A: 4, 9, 6, 11)

    m = load_market(cfg, None, None)
    # corrected latency = jitter - the file's smallest jitter: never negative, and the jitter is kept
    assert ((m.books.ts_local - m.books.ts_ex) // MS).tolist() == [2, 7, 4, 9, 4, 5]
    assert ((m.trades.ts_local - m.trades.ts_ex) // MS).tolist() == [0, 1, 3, 0, 2]


def test_warehouse_show_reports_the_offsets_and_old_data_as_not_estimated(
    make_config: ConfigFactory, recordings: list[Path], tmp_path: Path
) -> None:
    cfg = binance(make_config(warehouse={"snapshot_levels": 2}))
    assert run_ingest(FileSource(recordings), cfg, detail="two files").status == "completed"

    def show() -> str:
        p = subprocess.run(
            [sys.executable, "-m", "warehouse", "show", "--config", str(tmp_path / "config.yaml")],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        return p.stdout

    out = show()
    assert "binance-usdm/BTCUSDT btcusdt_a.gz: clock ran 1.498 s behind the exchange, offset +1,498.0 ms" in out
    assert "local - exchange over 7 events: 0.1 % quantile -1,498.0 ms, min -1,498.0 ms, median -1,495.0 ms" in out
    assert "corrected median +3.0 ms, 0 read at zero latency" in out
    assert "binance-usdm/BTCUSDT btcusdt_b.gz: clock ran 1.197 s behind the exchange, offset +1,197.0 ms" in out
    assert "not estimated" not in out

    # A warehouse from before the estimate: no clock_offsets table, schema version 1
    path = cfg.resolve(cfg.warehouse.path)
    with writing(path) as con:
        con.execute("DROP TABLE clock_offsets")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    out = show()
    assert "binance-usdm/BTCUSDT: 11 book updates and trades not estimated (imported before): offset 0" in out
    m = load_market(cfg, None, None)  # still opens; the old rule: delivered no earlier than exchange time
    assert (m.books.ts_local == m.books.ts_ex).all() and (m.trades.ts_local == m.trades.ts_ex).all()

    # Importing file A again migrates the file and estimates it; file B's events stay at offset 0
    again = run_ingest(FileSource(recordings[:1]), cfg, detail="again")
    assert again.status == "completed" and again.inserted["book_updates"] == 0
    with reading(path) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    out = show()
    assert "btcusdt_a.gz: clock ran 1.498 s behind the exchange" in out and "btcusdt_b.gz" not in out
    assert "binance-usdm/BTCUSDT: 4 book updates and trades not estimated (imported before): offset 0" in out


def test_stored_estimate_can_be_redone_from_the_recorded_times(
    make_config: ConfigFactory, recordings: list[Path]
) -> None:
    cfg = binance(make_config(warehouse={"snapshot_levels": 2}))
    run_ingest(FileSource(recordings), cfg, detail="two files")
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        seg = clocks.segments(con)[0]
        redone = clocks.estimate_stored(con, seg.venue, seg.symbol, seg.first_local_ns, seg.last_local_ns)
    assert redone == seg.estimate


def test_a_session_that_never_ends_gives_a_row_per_part_and_holds_no_more_than_a_part() -> None:
    """A live ingest's segment ("session") never ends: its latencies are estimated part by part
    (``max_samples`` events each), not piled up in memory until the process stops."""
    import pyarrow as pa

    tracker = clocks.ClockTracker("bybit", "BTCUSDT", "run", max_samples=1_000)
    rows, buffers = [], []
    for k in range(25):  # 25 batches of 100 trades, 3 ms late each
        ex = np.arange(k * 100, (k + 1) * 100, dtype=np.int64) * MS
        table = pa.table({"ts_local_ns": ex + 3 * MS, "ts_exchange_ns": ex})
        if (row := tracker.add("session", {"trades": table})) is not None:
            rows.append(row.to_pylist()[0])
        assert tracker._n <= 1_000 + 100  # never more than a part (and the batch that reached it) held
        assert tracker._buf.size <= 1_000 + 100  # and one buffer of that size, kept from part to part
        if k >= 10:  # the first part is in (kept alive here: a freed buffer's id could be reused)
            buffers.append(tracker._buf)
    last = tracker.finish()
    assert last is not None
    rows.append(last.to_pylist()[0])
    assert [r["samples"] for r in rows] == [1_000, 1_000, 500]
    assert all(b is buffers[0] for b in buffers)  # the second and third parts reuse the first's buffer
    assert all(r["segment"] == "session" and r["latency_median_ns"] == 3 * MS for r in rows)
    firsts = [r["first_local_ns"] for r in rows]
    assert firsts == sorted(firsts) and rows[1]["first_local_ns"] > rows[0]["last_local_ns"]  # parts follow each other


def test_the_tracker_keeps_no_batch_alive() -> None:
    """A live session's segment lasts hours: the tracker keeps its own latencies, never a view of a
    batch's columns (which would keep every batch's Arrow buffers for the whole segment)."""
    import gc

    import pyarrow as pa
    import pyarrow.compute as pc

    tracker = clocks.ClockTracker("bybit", "BTCUSDT", "run")
    base = pa.total_allocated_bytes()
    for k in range(20):
        ex = pa.array(range(k * 10_000, (k + 1) * 10_000), pa.int64())  # Arrow's own memory, 80 kB a column
        table = pa.table({"ts_local_ns": pc.add(ex, 3 * MS), "ts_exchange_ns": ex})
        assert tracker.add("session", {"book_updates": table}) is None
        del ex, table
    gc.collect()
    assert pa.total_allocated_bytes() - base < 100_000  # not the 3.2 MB of the 20 batches
    row = tracker.finish()
    assert row is not None and row.to_pylist()[0]["samples"] == 200_000
    assert row.to_pylist()[0]["latency_median_ns"] == 3 * MS
