"""The real Binance USD-M recordings rebuild a gap-free book that matches the venue's own bookTicker."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from market.events import fixed_to_numpy
from market.sources.files import FileSource
from tests.conftest import ConfigFactory, episode_paths, real_data
from warehouse.db import reading
from warehouse.ingest import run_ingest

pytestmark = [real_data, pytest.mark.real_data]


@pytest.mark.parametrize("episode", ["2023-04-04", "2024-07-18"])
def test_recording_rebuilds_a_gap_free_book_equal_to_book_ticker(make_config: ConfigFactory, episode: str) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 5})
    result = run_ingest(FileSource(episode_paths(episode)), cfg, detail=episode)
    assert result.status == "completed", result.error
    assert result.counts["gaps"] == 0 and result.counts["rejected"] == 0
    assert result.counts["book_updates"] > 8000 and result.counts["trades"] > 10_000
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        snaps = con.sql("SELECT update_id, bid_px, ask_px FROM snapshots").to_arrow_table()
        tickers = con.execute("SELECT payload FROM raw_messages WHERE stream = 'btcusdt@bookTicker'").fetchall()
        gaps = con.execute("SELECT count(*) FROM sync_events WHERE kind = 'gap'").fetchall()[0][0]
    assert gaps == 0
    best = {
        uid: (bid, ask)
        for uid, bid, ask in zip(
            snaps.column("update_id").to_pylist(),
            fixed_to_numpy(snaps.column("bid_px"), 5)[:, 0].tolist(),
            fixed_to_numpy(snaps.column("ask_px"), 5)[:, 0].tolist(),
            strict=True,
        )
    }
    compared = mismatched = 0
    for (payload,) in tickers:
        d = orjson.loads(payload)["data"]
        if d["u"] in best:
            compared += 1
            mismatched += best[d["u"]] != (float(d["b"]), float(d["a"]))
    assert compared >= 300, f"only {compared} bookTicker updates line up with a depth diff"
    assert mismatched == 0


def test_reimporting_a_recording_adds_nothing(make_config: ConfigFactory) -> None:
    cfg = make_config(warehouse={"snapshot_levels": 2})
    first = run_ingest(FileSource(episode_paths("2024-07-18")), cfg, detail="first")
    again = run_ingest(FileSource(episode_paths("2024-07-18")), cfg, detail="again")
    assert first.inserted["snapshots"] == first.counts["book_updates"] > 0
    assert sum(v for k, v in again.inserted.items()) == 0


def test_real_replay_delivers_the_book_with_positive_feed_latency(make_config: ConfigFactory) -> None:
    """The 2024 recorder's clock runs ~1.52 s behind the exchange: without the import's offset every
    book event would reach the strategy at its exchange time (zero feed latency)."""
    from execution.backtest import engine_config
    from execution.engine import Engine
    from pipelines.replay import load_market
    from warehouse import clocks

    cfg = make_config(warehouse={"snapshot_levels": 5})
    assert run_ingest(FileSource(episode_paths("2024-07-18")), cfg, detail="2024").status == "completed"
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        segs = clocks.segments(con)
        recorded = con.execute("SELECT quantile_cont(ts_local_ns - ts_exchange_ns, 0.99) FROM book_updates").fetchone()
    assert recorded is not None and recorded[0] < -1.4e9  # as recorded: local time 1.4+ s before exchange time
    assert [s.segment for s in segs] == ["btcusdt_20240718.gz", "btcusdt_20240719.gz"]
    assert all(1.4e9 < s.estimate.offset_ns < 1.6e9 for s in segs)

    pair = cfg.model_copy(update={"instrument": cfg.instrument.model_copy(update={"venue": "binance-usdm"})})
    m = load_market(pair, None, None, 5)
    lat = m.books.ts_local - m.books.ts_ex
    assert lat.min() >= 0 and (lat > 0).mean() > 0.99
    assert np.median(lat) > 1_000_000  # over a millisecond: a latency from the data, not the zero floor
    # the engine's guard (no delivery before the exchange saw it) no longer binds: delivered at the local time
    engine = Engine(engine_config(cfg), 5)
    engine.load(m)
    n = 2_000 + int(np.argmax(lat[2_000:] > 0))
    engine.run_until(int(m.books.ts_ex[n]))  # the exchange has book event n; we have not received it yet
    seen = engine.book()
    assert 0 < seen.ts_local <= m.books.ts_ex[n] < m.books.ts_local[n]


def test_live_feed_drops_no_tick_and_online_features_equal_batch_features_in_arrival_order(
    make_config: ConfigFactory,
) -> None:
    """The 2024 recording's trades and depth diffs travel on separate streams: some trades arrive after
    a depth diff stamped later than them. The feed applies them (it used to drop them) and the online
    features over its ticks equal the batch features over the same messages, chunk by arrival chunk."""
    import asyncio

    from core.records import Book
    from features import BatchFeatures, OnlineFeatures
    from live.feed import SourceFeed, Tick
    from market.normalize import Normalizer

    cfg = make_config(warehouse={"snapshot_levels": 20})
    tick_size, chunk = 0.1, 40  # raw messages per arrival chunk

    async def feed_ticks(feed: SourceFeed) -> list[Tick]:
        return [t async for batch in feed.batches() for t in batch]

    feed = SourceFeed(FileSource(episode_paths("2024-07-18"), batch_lines=chunk), cfg)
    ticks = asyncio.run(feed_ticks(feed))
    n_books = sum(isinstance(t, Book) for t in ticks)
    assert n_books == feed.counts["book_updates"] > 8_000
    assert len(ticks) - n_books == feed.counts["trades"] > 10_000  # every trade passed on
    assert feed.counts["late"] > 10  # trades stamped before a book update already passed on: applied

    online = OnlineFeatures(tick_size)
    got: list[np.ndarray] = []
    for t in ticks:
        if isinstance(t, Book):
            got.append(online.update_book(t.ts_ex, t.epoch, t.bid_px, t.bid_qty, t.ask_px, t.ask_qty).copy())
        else:
            online.update_trade(t.ts_ex, t.price, t.qty, t.side)

    # the reference: the batch engine over the same raw messages, one arrival chunk at a time
    async def raw_chunks() -> list[object]:
        return [b async for b in FileSource(episode_paths("2024-07-18"), batch_lines=chunk).batches()]

    src = FileSource(episode_paths("2024-07-18"))
    norm = Normalizer(src.venue, "BTCUSDT", tick_size, 20, store_raw=False)
    batch = BatchFeatures(tick_size)
    want: list[np.ndarray] = []
    for raw in asyncio.run(raw_chunks()):
        out = norm.process(raw)  # type: ignore[arg-type]
        want.extend(batch.run(out.books, out.trades))  # trades after a chunk's last book update wait in it
    assert len(got) == len(want) == n_books
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-9, atol=1e-12, equal_nan=True)
