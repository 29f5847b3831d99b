"""Back-fill from the CSV archives: Bybit's trade files and Tardis.dev's incremental_book_L2 and
trades, merged with the order-book archive into one stream by exchange time.

The files are the simulated market written in the archive formats (sim/archives.py); every check
compares what the warehouse stored with an independent reading of the files (the csv module, a
dict per book side, Decimal for times), never with the importer's own code."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import itertools
import zipfile
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from core.config import AppConfig
from market.events import RawBatch, fixed_to_numpy
from market.parsing import Decoded
from market.sources import files
from market.sources.files import FileSource
from sim.archives import write_archives
from tests.conftest import ConfigFactory
from tests.test_cli import assert_one_line_error, cli
from warehouse.db import reading
from warehouse.ingest import run_ingest

LEVELS = 20
MINUTES = 6


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Six simulated minutes in Bybit's and Tardis's formats: ob500 zip, trades csv.gz, Tardis book and trades."""
    from core.config import AppConfig as _Cfg

    out = tmp_path_factory.mktemp("archives")
    written = write_archives(_Cfg(), MINUTES / 60, out, tardis=True)
    ob, trades, tardis_book, tardis_trades = written.files
    return {"ob": ob, "trades": trades, "tardis_book": tardis_book, "tardis_trades": tardis_trades}


def _text(path: Path) -> str:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            return zf.read(zf.namelist()[0]).decode()
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def _rows(path: Path) -> Iterator[dict[str, str]]:
    yield from csv.DictReader(io.StringIO(_text(path)))


def _ingest(cfg: AppConfig, paths: list[Path]) -> Counter[str]:
    return run_ingest(FileSource(paths, instrument=cfg.instrument), cfg, detail="test").counts


def _stored_trades(cfg: AppConfig) -> list[tuple[int, int, str, float, float, int]]:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        rows = con.execute(
            "SELECT ts_exchange_ns, ts_local_ns, trade_id, price, qty, side FROM trades ORDER BY ts_exchange_ns, trade_id"
        ).fetchall()
    return [tuple(r) for r in rows]


def _stored_books(cfg: AppConfig) -> list[tuple[int, list[list[float]]]]:
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        t = con.sql(
            "SELECT ts_exchange_ns, bid_px, bid_qty, ask_px, ask_qty FROM snapshots ORDER BY ts_exchange_ns, update_id"
        ).to_arrow_table()
    levels = [fixed_to_numpy(t.column(c), LEVELS) for c in ("bid_px", "bid_qty", "ask_px", "ask_qty")]
    out = []
    for i, ts in enumerate(t.column("ts_exchange_ns").to_pylist()):
        bid, ask = ~np.isnan(levels[0][i]), ~np.isnan(levels[2][i])  # a book shallower than LEVELS: padded
        kept = [lv[i][m].tolist() for lv, m in zip(levels, (bid, bid, ask, ask), strict=True)]
        out.append((ts, kept))
    return out


def _top(sides: dict[str, dict[float, float]]) -> list[list[float]]:
    bids = sorted(sides["bid"].items(), reverse=True)[:LEVELS]
    asks = sorted(sides["ask"].items())[:LEVELS]
    return [[p for p, _ in bids], [q for _, q in bids], [p for p, _ in asks], [q for _, q in asks]]


def tardis_rebuild(path: Path) -> list[tuple[int, list[list[float]]]]:
    """The book after each Tardis update (rows of one timestamp; snapshot rows replace the book)."""
    sides: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    out: list[tuple[int, list[list[float]]]] = []
    key = None
    for r in _rows(path):
        k = (r["timestamp"], r["local_timestamp"], r["is_snapshot"])
        if k != key:
            if key is not None:
                out.append((int(key[0]) * 1000, _top(sides)))
            if r["is_snapshot"] == "true":
                sides = {"bid": {}, "ask": {}}
            key = k
        px, qty = float(r["price"]), float(r["amount"])
        if qty == 0:
            sides[r["side"]].pop(px, None)
        else:
            sides[r["side"]][px] = qty
    if key is not None:
        out.append((int(key[0]) * 1000, _top(sides)))
    return out


def bybit_rebuild(path: Path) -> list[tuple[int, list[list[float]]]]:
    sides: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    out = []
    for line in _text(path).splitlines():
        m = orjson.loads(line)
        if m["type"] == "snapshot":
            sides = {"bid": {}, "ask": {}}
        for side, key in (("bid", "b"), ("ask", "a")):
            for px, qty in m["data"][key]:
                if float(qty) == 0:
                    sides[side].pop(float(px), None)
                else:
                    sides[side][float(px)] = float(qty)
        out.append((int(m["cts"]) * 1_000_000, _top(sides)))
    return out


def test_bybit_archives_import_merged_by_the_cli_with_exact_trades_and_no_local_time(
    make_config: ConfigFactory, tmp_path: Path, archives: dict[str, Path]
) -> None:
    """As a desk types it: the day's ob500 zip and trade csv.gz in one command, one stream by
    exchange time; trades keep their exact times; `warehouse show` says the data has no local
    receive time and replays read it at the configured archive latency."""
    cfg = make_config(warehouse={"snapshot_levels": LEVELS}, ingest={"archive_latency": "7ms"})
    config = str(tmp_path / "config.yaml")
    p = cli("-m", "flows.ingest", "--source", "file", "--path", str(archives["ob"]), "--path", str(archives["trades"]),
            "--config", config)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    books, trades = bybit_rebuild(archives["ob"]), list(_rows(archives["trades"]))
    assert f"{len(books):,} book updates, {len(trades):,} trades, 0 rejected, 0 gaps" in p.stdout, p.stdout[-2000:]
    assert _stored_books(cfg) == books
    want = sorted(
        (
            int(Decimal(r["timestamp"]) * 10**9),
            r["trdMatchID"],
            float(r["price"]),
            float(r["size"]),
            1 if r["side"] == "Buy" else -1,
        )
        for r in trades
    )
    got = _stored_trades(cfg)
    assert [(t[0], t[2], t[3], t[4], t[5]) for t in got] == want
    assert all(t[1] == t[0] for t in got)  # no local receive time: the exchange's stands in
    show = cli("-m", "warehouse", "show", "--config", config)
    assert show.returncode == 0, show.stderr
    assert "no local receive time (an archive" in show.stdout and "replays read it +7.0 ms later" in show.stdout
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        segments = con.execute("SELECT segment, offset_ns, local_time FROM clock_offsets").fetchall()
    assert segments == [(f"{archives['ob'].name}+{archives['trades'].name}", 7_000_000, False)]


def test_tardis_book_and_trades_rebuild_the_same_market_as_the_bybit_archives(
    make_config: ConfigFactory, tmp_path: Path, archives: dict[str, Path]
) -> None:
    """The same simulated minutes in Tardis's format: the stored book equals an independent rebuild
    of the Tardis rows after every update, and equals the book the Bybit archive gives; the trades
    are the same trades, with Tardis's local receive times."""
    cfg = make_config(warehouse={"snapshot_levels": LEVELS})
    counts = _ingest(cfg, [archives["tardis_book"], archives["tardis_trades"]])
    expected = tardis_rebuild(archives["tardis_book"])
    assert counts["book_updates"] == len(expected) and counts["rejected"] == 0 and counts["gaps"] == 0
    stored = _stored_books(cfg)
    assert stored == expected
    assert stored == bybit_rebuild(archives["ob"])
    rows = list(_rows(archives["tardis_trades"]))
    got = _stored_trades(cfg)
    want = sorted(
        (int(r["timestamp"]) * 1000, int(r["local_timestamp"]) * 1000, r["id"], float(r["price"]), float(r["amount"]),
         1 if r["side"] == "buy" else -1)
        for r in rows
    )  # fmt: skip
    assert got == want
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        (local_time,) = con.execute("SELECT bool_and(local_time) FROM clock_offsets").fetchone() or (None,)
    assert local_time is True  # Tardis records when it received each message


def test_an_update_cut_by_a_block_boundary_is_decoded_whole(
    make_config: ConfigFactory, tmp_path: Path, archives: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of 4 KiB cut Tardis updates (and trade lines) everywhere: the result is the same."""
    monkeypatch.setattr(files, "_BLOCK", 4096)
    cfg = make_config(warehouse={"snapshot_levels": LEVELS})
    counts = _ingest(cfg, [archives["tardis_book"], archives["tardis_trades"]])
    assert counts["rejected"] == 0 and counts["gaps"] == 0
    assert _stored_books(cfg) == tardis_rebuild(archives["tardis_book"])
    assert len(_stored_trades(cfg)) == len(list(_rows(archives["tardis_trades"])))


def test_the_files_merge_into_one_stream_by_exchange_time(
    archives: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chain's messages come out whole and in their order, and the chains advance together:
    a part never reaches past the one after next (with two chains, a window holds at most one part of each)."""
    monkeypatch.setattr(files, "_BLOCK", 1 << 16)
    src = FileSource([archives["ob"], archives["trades"]])

    async def read() -> list[RawBatch | Decoded]:
        return [b async for b in src.batches()]

    parts = asyncio.run(read())
    keys = [np.asarray(p.keys if isinstance(p, Decoded) else p.ts_local) for p in parts]
    kinds = ["trades" if isinstance(p, Decoded) else "book" for p in parts]
    assert kinds.count("book") > 5 and kinds.count("trades") > 5
    switches = sum(a != b for a, b in itertools.pairwise(kinds))
    assert switches > 10  # interleaved, not one file after the other
    for i in range(len(parts) - 2):
        assert keys[i].max() <= keys[i + 2].min(), i
    book_lines = sum(len(p) for p, k in zip(parts, kinds, strict=True) if k == "book")
    trade_lines = sum(len(p) for p, k in zip(parts, kinds, strict=True) if k == "trades")
    assert book_lines == len(_text(archives["ob"]).splitlines())
    assert trade_lines == len(list(_rows(archives["trades"])))


TRADES_HEADER = (
    "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional,RPI\n"
)


def test_bad_trade_lines_are_rejected_one_by_one_and_times_keep_every_digit(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """A newer file (with RPI), times to the 0.1 ms and finer, and one bad line of each kind: exactly
    the bad lines are rejected, each with its reason and line number; the good ones keep every digit."""
    good = [
        "1704067199.5566,BTCUSDT,Buy,0.001,42313.9,PlusTick,a,4231390,0.001,42.3139,0",
        "1704067199.55661234,BTCUSDT,Sell,0.5,42313.8,MinusTick,b,1,0.5,1,0",
        "1704067200,BTCUSDT,Buy,1.25,42314,PlusTick,c,1,1.25,1,1",
    ]
    bad = {
        "1704067200.1,BTCUSDT,Buy,abc,42314,PlusTick,d,1,1,1,0": "bad_value",  # size does not convert
        "1704067200.2,ETHUSDT,Buy,1,2300,PlusTick,e,1,1,1,0": "wrong_symbol",
        "1704067200.3,BTCUSDT,Hold,1,42314,PlusTick,f,1,1,1,0": "bad_value",  # no such side
        "1704067200.4,BTCUSDT,Buy,1,42314": "missing_field",
        "1704067200.1234567891,BTCUSDT,Buy,1,42314,PlusTick,g,1,1,1,0": "bad_value",  # finer than a ns
        "1704067200.5,BTCUSDT,Sell,-1,42314,PlusTick,h,1,1,1,0": "negative_size",
        "1704067200.6,BTCUSDT,Sell,0,42314,PlusTick,i,1,1,1,0": "bad_value",
    }
    lines = [good[0], *bad, good[1], good[2]]
    path = tmp_path / "BTCUSDT2024-01-01.csv.gz"
    path.write_bytes(gzip.compress((TRADES_HEADER + "\n".join(lines) + "\n").encode()))
    cfg = make_config()
    counts = _ingest(cfg, [path])
    assert counts["trades"] == 3 and counts["rejected"] == len(bad)
    got = _stored_trades(cfg)
    assert [(t[0], t[2], t[4], t[5]) for t in got] == [
        (1704067199556600000, "a", 0.001, 1),
        (1704067199556612340, "b", 0.5, -1),
        (1704067200000000000, "c", 1.25, 1),
    ]
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        details = [r[0] for r in con.execute("SELECT detail FROM sync_events WHERE kind = 'reject'").fetchall()]
    reasons = sorted(d.split(":", 1)[0] for d in details)
    assert reasons == sorted(bad.values()), details
    for n in range(3, 3 + len(bad)):  # the header is line 1, the first good trade line 2
        assert sum(f"{path}:{n}:" in d for d in details) == 1, (n, details)


def test_a_bad_row_in_a_tardis_update_rejects_the_update_and_the_book_waits_for_a_snapshot(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """Never patched: an update with a row that does not read is rejected whole; the updates after
    it cannot be applied to a book that missed one (a gap) until the next snapshot resets it."""
    head = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
    t0 = 1_704_067_200_000_000

    def snapshot(t: int) -> list[str]:
        return [f"bybit,BTCUSDT,{t},{t + 900},true,{s},{p},1" for s, p in (("bid", "100.0"), ("ask", "100.1"))]

    def update(t: int, qty: str) -> list[str]:
        return [f"bybit,BTCUSDT,{t},{t + 900},false,bid,100.0,{qty}", f"bybit,BTCUSDT,{t},{t + 900},false,ask,100.1,2"]

    lines = snapshot(t0) + update(t0 + 1000, "3") + update(t0 + 2000, "x") + update(t0 + 3000, "4")
    lines += snapshot(t0 + 4000) + update(t0 + 5000, "5")
    path = tmp_path / "book.csv"
    path.write_text(head + "\n".join(lines) + "\n")
    cfg = make_config(warehouse={"snapshot_levels": LEVELS})
    counts = _ingest(cfg, [path])
    assert counts["rejected"] == 1 and counts["gaps"] == 1
    stored = _stored_books(cfg)
    assert [ts // 1000 - t0 for ts, _ in stored] == [0, 1000, 4000, 5000]  # 2000 rejected, 3000 after the gap
    assert stored[-1][1] == [[100.0], [5.0], [100.1], [2.0]]


def test_unknown_csv_and_a_tardis_exchange_not_imported_fail_in_one_line(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    make_config()
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    p = cli("-m", "flows.ingest", "--source", "file", "--path", str(other), "--config", str(tmp_path / "config.yaml"))
    assert p.returncode == 2
    assert_one_line_error(p, "unknown format", "Tardis CSV")
    okex = tmp_path / "okex.csv"
    okex.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nokex,BTC-USDT,1,2,a,buy,1,1\n")
    p = cli("-m", "flows.ingest", "--source", "file", "--path", str(okex), "--config", str(tmp_path / "config.yaml"))
    assert p.returncode == 3
    assert_one_line_error(p, "Tardis exchange 'okex' is not imported here")


def test_sim_archives_writes_the_four_files_as_typed(make_config: ConfigFactory, tmp_path: Path) -> None:
    make_config()
    out = tmp_path / "out"
    p = cli(
        "-m",
        "sim.archives",
        "--hours",
        "0.02",
        "--out",
        str(out),
        "--tardis",
        "--config",
        str(tmp_path / "config.yaml"),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    names = sorted(f.name for f in out.iterdir())
    assert names == [
        "2026-01-05_BTCUSDT_ob500.data.zip",
        "BTCUSDT2026-01-05.csv.gz",
        "bybit_incremental_book_L2_2026-01-05_BTCUSDT.csv.gz",
        "bybit_trades_2026-01-05_BTCUSDT.csv.gz",
    ]
    books = len(_text(out / names[0]).splitlines())
    trades = len(list(_rows(out / names[1])))
    assert books > 100 and trades > 10
    assert f"wrote {books:,} book messages and {trades:,} trades" in p.stdout
    assert len(list(_rows(out / names[3]))) == trades
    bad = cli("-m", "sim.archives", "--hours", "0", "--out", str(out), "--config", str(tmp_path / "config.yaml"))
    assert bad.returncode == 2
    assert_one_line_error(bad, "--hours 0")
