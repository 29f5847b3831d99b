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
    from warehouse import clocks
    from warehouse.replay import load_market

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
    lat = m.book_ts_local - m.book_ts_ex
    assert lat.min() >= 0 and (lat > 0).mean() > 0.99
    assert np.median(lat) > 1_000_000  # over a millisecond: a latency from the data, not the zero floor
    # the engine's guard (no delivery before the exchange saw it) no longer binds: delivered at the local time
    engine = Engine(engine_config(cfg), 5)
    engine.load(m)
    n = 2_000 + int(np.argmax(lat[2_000:] > 0))
    engine.run_until(int(m.book_ts_ex[n]))  # the exchange has book event n; we have not received it yet
    seen = engine.book()
    assert 0 < seen.ts_local <= m.book_ts_ex[n] < m.book_ts_local[n]
