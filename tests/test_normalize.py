"""The normalizer: sequence handling, what is stored and what is rejected, per venue."""

from __future__ import annotations

import orjson

from market.events import BOOK_UPDATES, RAW_MESSAGES, SYNC_EVENTS, TRADES, RawMessage, fixed_to_numpy, snapshot_spec
from market.normalize import Normalizer
from market.venues import BINANCE_USDM, BYBIT
from tests.bybit_msgs import book, ms, raw, trades

B0 = [(65000.0, 1.0), (64999.9, 2.0)]
A0 = [(65000.1, 1.5), (65000.2, 0.5)]


def run(n: Normalizer, *payloads: str):
    return n.process([raw(p, ms(i)) for i, p in enumerate(payloads)])


def nz(levels: int = 2) -> Normalizer:
    return Normalizer(BYBIT, "BTCUSDT", 0.1, levels)


def test_tables_follow_the_schema() -> None:
    out = run(nz(), book(100, 1, B0, A0, snapshot=True), trades(2, [("Buy", 65000.1, 0.1, "x")]))
    assert out.tables[BOOK_UPDATES.name].schema == BOOK_UPDATES.arrow_schema
    assert out.tables["snapshots"].schema == snapshot_spec(2).arrow_schema
    assert out.tables[TRADES.name].schema == TRADES.arrow_schema
    assert out.tables[RAW_MESSAGES.name].schema == RAW_MESSAGES.arrow_schema
    assert out.tables[SYNC_EVENTS.name].schema == SYNC_EVENTS.arrow_schema
    assert out.rows("raw_messages") == 2 and out.rows("trades") == 1 and out.rows("snapshots") == 1


def test_skipped_update_id_records_gap_and_asks_for_resync() -> None:
    n = nz()
    out = run(
        n,
        book(100, 1, B0, A0, snapshot=True),
        book(101, 2, [(65000.0, 3.0)], []),
        book(103, 3, [(65000.0, 4.0)], []),
        book(104, 4, [], []),
    )
    assert out.counts["gaps"] == 1 and out.counts["not_synced"] == 1
    assert out.rows("book_updates") == 2  # only the contiguous prefix is normalized
    assert out.rows("raw_messages") == 4  # the exchange did send them: kept raw
    assert n.needs_resync
    kinds = out.tables["sync_events"].column("kind").to_pylist()
    assert kinds == ["snapshot", "gap"]
    out2 = run(n, book(200, 5, B0, A0, snapshot=True), book(201, 6, [(64999.8, 1.0)], []))
    assert out2.rows("book_updates") == 2 and not n.needs_resync


def test_new_snapshot_mid_stream_resets_the_book_and_epoch() -> None:
    n = nz()
    out = run(
        n,
        book(100, 1, B0, A0, snapshot=True),
        book(101, 2, [(64999.9, 0.0)], []),
        book(500, 7, [(70000.0, 1.0)], [(70000.1, 1.0)], snapshot=True),
    )
    snaps = out.tables["snapshots"]
    assert snaps.column("epoch_ns").to_pylist() == [1_000_000, 1_000_000, 7_000_000]
    assert fixed_to_numpy(snaps.column("bid_px"), 2)[2, 0] == 70000.0
    assert out.tables["book_updates"].column("epoch_ns").to_pylist() == [1_000_000, 1_000_000, 7_000_000]


def test_u_equal_1_overwrites_the_book_as_a_restart() -> None:
    n = nz()
    out = run(
        n,
        book(100, 1, B0, A0, snapshot=True),
        book(1, 2, [(60000.0, 1.0)], [(60000.1, 1.0)]),
        book(2, 3, [(60000.0, 2.0)], []),
    )
    assert out.tables["sync_events"].column("kind").to_pylist() == ["snapshot", "restart"]
    snaps = out.tables["snapshots"]
    bids = fixed_to_numpy(snaps.column("bid_px"), 2)
    assert bids[1].tolist()[0] == 60000.0 and out.counts["gaps"] == 0
    assert out.rows("book_updates") == 3


def test_crossed_update_is_rejected_never_stored_and_forces_resync() -> None:
    n = nz()
    crossed = book(101, 2, [(65000.5, 1.0)], [])
    out = run(n, book(100, 1, B0, A0, snapshot=True), crossed, book(102, 3, [], []))
    assert out.counts["rejected"] == 1
    raw_payloads = out.tables["raw_messages"].column("payload").to_pylist()
    assert crossed not in raw_payloads and len(raw_payloads) == 2
    assert out.rows("book_updates") == 1 and n.needs_resync
    details = out.tables["sync_events"].column("detail").to_pylist()
    assert any(d.startswith("crossed") for d in details)


def test_malformed_frames_are_counted_and_kept_out_of_every_table() -> None:
    n = nz()
    bad = [
        '{"topic":',
        '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT"}}',
        orjson.dumps(
            {
                "topic": "orderbook.50.BTCUSDT",
                "type": "delta",
                "ts": 2,
                "cts": 2,
                "data": {"s": "BTCUSDT", "b": [["65000.0", "-2"]], "a": [], "u": 101, "seq": 1},
            }
        ).decode(),
    ]
    out = run(n, book(100, 1, B0, A0, snapshot=True), *bad)
    assert out.counts["rejected"] == 3
    assert out.rows("raw_messages") == 1 and out.rows("book_updates") == 1
    reasons = [d.split(":")[0] for d in out.tables["sync_events"].column("detail").to_pylist()[:3]]
    assert reasons == ["bad_json", "missing_field", "negative_size"]
    # the negative-size delta carried u=101: the next delta no longer follows, so the book resyncs
    out2 = run(n, book(102, 3, [], []))
    assert out2.counts["gaps"] == 1


def test_store_raw_false_keeps_no_raw_table() -> None:
    n = Normalizer(BYBIT, "BTCUSDT", 0.1, 2, store_raw=False)
    assert "raw_messages" not in run(n, book(100, 1, B0, A0, snapshot=True)).tables


def test_note_records_source_events() -> None:
    t = nz().note("reconnect", "after 1.0s", 123)
    assert t.column("kind").to_pylist() == ["reconnect"] and t.column("ts_local_ns").to_pylist() == [123]


def depth(t: int, first: int, last: int, prev: int, bids, asks=()) -> RawMessage:
    body = {
        "stream": "btcusdt@depth@0ms",
        "data": {
            "e": "depthUpdate",
            "E": t,
            "T": t,
            "s": "BTCUSDT",
            "U": first,
            "u": last,
            "pu": prev,
            "b": [[f"{p:.2f}", f"{q:.3f}"] for p, q in bids],
            "a": [[f"{p:.2f}", f"{q:.3f}"] for p, q in asks],
        },
    }
    return RawMessage("binance-usdm", "", t * 1_000_000, orjson.dumps(body).decode())


def rest_snapshot(t: int, last: int, bids, asks) -> RawMessage:
    body = {
        "lastUpdateId": last,
        "E": t,
        "T": t,
        "bids": [[f"{p:.2f}", f"{q:.3f}"] for p, q in bids],
        "asks": [[f"{p:.2f}", f"{q:.3f}"] for p, q in asks],
    }
    return RawMessage("binance-usdm", "", t * 1_000_000 + 500, orjson.dumps(body).decode())


def test_binance_diffs_received_before_the_snapshot_are_replayed_after_it() -> None:
    n = Normalizer(BINANCE_USDM, "BTCUSDT", 0.1, 1)
    first = n.process([depth(10, 5, 8, 4, [(100.0, 1.0)]), depth(11, 9, 12, 8, [(100.0, 2.0)])])
    assert first.rows("book_updates") == 0  # waiting for the REST snapshot
    out = n.process(
        [rest_snapshot(11, 10, [(100.0, 7.0)], [(100.5, 1.0)]), depth(12, 13, 15, 12, [(100.0, 3.0)], [(100.5, 0.5)])]
    )
    # the 5..8 diff is older than the snapshot (dropped); 9..12 spans it (applied); 13..15 follows
    assert out.tables["book_updates"].column("update_id").to_pylist() == [10, 12, 15]
    assert fixed_to_numpy(out.tables["snapshots"].column("bid_qty"), 1)[:, 0].tolist() == [7.0, 2.0, 3.0]
    assert out.counts["stale"] == 1 and out.counts["gaps"] == 0


def test_binance_pending_diffs_within_one_batch_are_replayed_after_the_snapshot() -> None:
    n = Normalizer(BINANCE_USDM, "BTCUSDT", 0.1, 1)
    out = n.process(
        [
            depth(11, 9, 12, 8, [(100.0, 2.0)]),
            rest_snapshot(11, 10, [(100.0, 7.0)], [(100.5, 1.0)]),
            depth(12, 13, 15, 12, [(100.0, 3.0)]),
        ]
    )
    assert out.tables["book_updates"].column("update_id").to_pylist() == [10, 12, 15]


def test_the_records_passed_on_are_the_rows_stored() -> None:
    """``Normalized.books`` / ``.trades`` (what the live feed hands on) hold exactly the snapshot and trade
    rows the warehouse stores, only the applied updates, with receive time and epoch."""
    n = nz()
    out = run(
        n,
        book(100, 1, B0, A0, snapshot=True),
        trades(2, [("Buy", 65000.1, 0.1, "x"), ("Sell", 65000.0, 0.3, "y")]),
        book(101, 3, [(65000.0, 3.0)], []),
        book(103, 4, [(65000.0, 4.0)], []),  # a gap: not applied, not passed on
    )
    snaps, prints = out.tables["snapshots"], out.tables[TRADES.name]
    assert len(out.books) == snaps.num_rows == 2 and len(out.trades) == prints.num_rows == 2
    for field, column in (("ts_ex", "ts_exchange_ns"), ("ts_local", "ts_local_ns"), ("epoch", "epoch_ns")):
        assert getattr(out.books, field).tolist() == snaps.column(column).to_pylist()
    for side in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
        assert (getattr(out.books, side) == fixed_to_numpy(snaps.column(side), 2)).all()
    assert out.books.bid_qty[1, 0] == 3.0 and out.books.ts_local.tolist() == [ms(0), ms(2)]
    for field, column in (("ts_ex", "ts_exchange_ns"), ("ts_local", "ts_local_ns"), ("price", "price"), ("qty", "qty")):
        assert getattr(out.trades, field).tolist() == prints.column(column).to_pylist()
    assert out.trades.side.tolist() == [1, -1] and out.trades.row(1).qty == 0.3
