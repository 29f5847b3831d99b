"""Venue parsers: real message shapes in, validated columns out; bad fields rejected with a reason."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from core.errors import UserError
from market.events import RawMessage
from market.venues import BINANCE_USDM, BYBIT, venue_by_name
from market.venues.binance import local_ts_to_ns
from tests.bybit_msgs import book, ms, raw, trades


def parse_bybit(*payloads: str):
    return BYBIT.parse([raw(p, ms(i)) for i, p in enumerate(payloads)], "BTCUSDT", 0.1)


def test_bybit_book_message_golden() -> None:
    p = parse_bybit(book(7, 1_700_000_000_000, [(65000.1, 1.5)], [(65000.2, 0.25), (65000.5, 0.0)], snapshot=True))
    b = p.book
    assert p.rejections == []
    assert p.streams == ["orderbook.50.BTCUSDT"]
    assert b.is_snap.tolist() == [True] and b.last_id.tolist() == [7] and b.prev_id.tolist() == [-1]
    assert b.ts_ex.tolist() == [1_700_000_000_000 * 1_000_000]
    assert b.bid_px.tolist() == [65000.1] and b.bid_qty.tolist() == [1.5]
    assert b.ask_px.tolist() == [65000.2, 65000.5] and b.ask_qty.tolist() == [0.25, 0.0]
    assert b.bid_off.tolist() == [0, 1] and b.ask_off.tolist() == [0, 2]


def test_bybit_delta_follows_previous_u() -> None:
    b = parse_bybit(book(8, 1, [], [])).book
    assert b.is_snap.tolist() == [False] and b.prev_id.tolist() == [7] and b.first_id.tolist() == [8]


def test_bybit_u_equal_1_is_a_snapshot_whatever_its_type() -> None:
    assert parse_bybit(book(1, 5, [(100.0, 1.0)], [(100.1, 1.0)])).book.is_snap.tolist() == [True]


def test_bybit_uses_cts_as_exchange_time_and_falls_back_to_ts() -> None:
    msg = orjson.loads(book(9, 100, [], []))
    del msg["cts"]
    p = parse_bybit(orjson.dumps(msg).decode())
    assert p.book.ts_ex.tolist() == [102 * 1_000_000]  # ts = cts + 2 in the helper


def test_bybit_trades_taker_side_and_ids() -> None:
    p = parse_bybit(trades(50, [("Buy", 65000.2, 0.01, "a-1"), ("Sell", 65000.1, 0.5, "a-2")]))
    t = p.trades
    assert t.side.tolist() == [1, -1] and t.trade_id == ["a-1", "a-2"]
    assert t.price.tolist() == [65000.2, 65000.1] and t.qty.tolist() == [0.01, 0.5]
    assert t.ts_ex.tolist() == [50_000_000, 50_000_000]


def test_bybit_control_messages_are_kept_as_streams_not_data() -> None:
    p = parse_bybit('{"success":true,"ret_msg":"","conn_id":"x","op":"subscribe"}')
    assert p.streams == ["subscribe"] and len(p.book) == 0 and p.rejections == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"topic":"orderbook.50.BTCUSDT","type":"delta",', "bad_json"),
        ("[1, 2]", "bad_json"),
        (
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"seq":1},"cts":1}',
            "missing_field",
        ),
        (
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":"7","seq":1},"cts":1}',
            "bad_value",
        ),
        (
            '{"topic":"orderbook.50.BTCUSDT","type":"weird","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":7,"seq":1},"cts":1}',
            "bad_value",
        ),
        (
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"ETHUSDT","b":[],"a":[],"u":7,"seq":1},"cts":1}',
            "wrong_symbol",
        ),
        ('{"topic":5}', "bad_value"),
        ('{"topic":"publicTrade.BTCUSDT","data":{"T":1}}', "missing_field"),
        ('{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"S":"Buy","v":"1","p":"1"}]}', "missing_field"),
        ('{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"S":"Up","v":"1","p":"1","i":"x"}]}', "bad_value"),
    ],
)
def test_bybit_malformed_messages_are_rejected_with_a_reason(payload: str, reason: str) -> None:
    p = parse_bybit(payload)
    assert [r.reason for r in p.rejections] == [reason]
    assert len(p.book) == 0 and len(p.trades) == 0


@pytest.mark.parametrize(
    ("bids", "reason"),
    [
        ([["65000.1", "-1.0"]], "negative_size"),
        ([["65000.1", "-0"]], "negative_size"),  # a signed zero is malformed, not a delete
        ([["65000.15", "1.0"]], "off_tick"),
        ([["nan", "1.0"]], "bad_value"),
        ([["-5", "1.0"]], "bad_value"),
        ([["65000.1", "inf"]], "bad_value"),
        ([["65000.1", "abc"]], "bad_value"),
        ([["65000.1"]], "bad_value"),
    ],
)
def test_bybit_bad_levels_reject_only_their_message(bids: list[list[str]], reason: str) -> None:
    bad = orjson.dumps(
        {
            "topic": "orderbook.50.BTCUSDT",
            "type": "delta",
            "ts": 1,
            "cts": 1,
            "data": {"s": "BTCUSDT", "b": bids, "a": [], "u": 8, "seq": 80},
        }
    ).decode()
    good = book(9, 2, [(65000.0, 1.0)], [])
    p = parse_bybit(good, bad, good)
    assert [(r.index, r.reason) for r in p.rejections] == [(1, reason)]
    assert p.book.skip.tolist() == [False, True, False]


def test_bybit_trade_with_bad_size_is_dropped_alone() -> None:
    msg = orjson.loads(trades(5, [("Buy", 100.0, 1.0, "t1"), ("Sell", 100.0, 1.0, "t2")]))
    msg["data"][1]["v"] = "-0.5"
    p = parse_bybit(orjson.dumps(msg).decode())
    assert p.trades.trade_id == ["t1"]
    assert [r.reason for r in p.rejections] == ["negative_size"]


def binance(ts: int, obj: dict) -> RawMessage:
    return RawMessage("binance-usdm", "", local_ts_to_ns(ts), orjson.dumps(obj).decode())


def test_binance_depth_snapshot_and_trade_golden() -> None:
    msgs = [
        binance(
            1_680_652_700_423_575,
            {
                "stream": "btcusdt@depth@0ms",
                "data": {
                    "e": "depthUpdate",
                    "E": 5,
                    "T": 4,
                    "s": "BTCUSDT",
                    "U": 10,
                    "u": 12,
                    "pu": 9,
                    "b": [["28145.10", "2.788"]],
                    "a": [["28145.20", "0.000"]],
                },
            },
        ),
        binance(
            1_721_347_021_281_597_601,
            {"lastUpdateId": 11, "E": 6, "T": 5, "bids": [["28145.00", "1.000"]], "asks": [["28145.30", "2.000"]]},
        ),
        binance(
            1_680_652_700_441_533,
            {
                "stream": "btcusdt@trade",
                "data": {
                    "e": "trade",
                    "E": 7,
                    "T": 6,
                    "s": "BTCUSDT",
                    "t": 3535186032,
                    "p": "28145.10",
                    "q": "0.002",
                    "X": "MARKET",
                    "m": True,
                },
            },
        ),
        binance(
            1_680_652_700_441_534,
            {
                "stream": "btcusdt@trade",
                "data": {
                    "e": "trade",
                    "E": 7,
                    "T": 6,
                    "s": "BTCUSDT",
                    "t": 3535186033,
                    "p": "28145.10",
                    "q": "0.002",
                    "X": "INSURANCE_FUND",
                    "m": True,
                },
            },
        ),
        binance(1_680_652_700_441_535, {"stream": "btcusdt@bookTicker", "data": {"u": 1}}),
    ]
    p = BINANCE_USDM.parse(msgs, "BTCUSDT", 0.1)
    assert p.rejections == []
    assert p.streams == ["btcusdt@depth@0ms", "rest/depth", "btcusdt@trade", "btcusdt@trade", "btcusdt@bookTicker"]
    b = p.book
    assert b.is_snap.tolist() == [False, True]
    assert b.first_id.tolist() == [10, 11] and b.last_id.tolist() == [12, 11] and b.prev_id.tolist() == [9, -1]
    assert b.ts_local.tolist() == [1_680_652_700_423_575_000, 1_721_347_021_281_597_601]  # us and ns stamps
    assert p.trades.side.tolist() == [-1]  # buyer is maker: the taker sold; insurance-fund print skipped
    assert p.trades.trade_id == ["3535186032"]


def test_binance_incomplete_messages_are_rejected() -> None:
    p = BINANCE_USDM.parse(
        [
            binance(1, {"stream": "btcusdt@depth@0ms", "data": {"U": 1}}),
            binance(2, {"lastUpdateId": 3}),
            binance(3, {"stream": "btcusdt@trade", "data": {"T": "x", "t": 1, "p": "1", "q": "1", "m": 1}}),
            binance(4, {"nostream": 1}),
            binance(5, {"stream": "btcusdt@trade", "data": 5}),
        ],
        "BTCUSDT",
        0.1,
    )
    assert [r.reason for r in p.rejections] == [
        "missing_field",
        "missing_field",
        "bad_value",
        "missing_field",
        "missing_field",
    ]


def test_unknown_venue_is_a_user_error() -> None:
    assert venue_by_name("bybit") is BYBIT
    with pytest.raises(UserError, match="unknown venue 'kraken'"):
        venue_by_name("kraken")


def _same_parse(msgs: list[RawMessage]) -> None:
    """The byte-level fast path and the general path give identical results."""
    from market.venues import bybit

    fast = bybit.parse(msgs, "BTCUSDT", 0.1)
    slow = bybit.parse(msgs, "BTCUSDT", 0.1, fast=False)
    assert fast.streams == slow.streams
    key = sorted((r.index, r.reason, r.detail) for r in fast.rejections)
    assert key == sorted((r.index, r.reason, r.detail) for r in slow.rejections)
    assert fast.trades.trade_id == slow.trades.trade_id
    for name in ("index", "ts_ex", "ts_local", "price", "qty", "side"):
        a, b = getattr(fast.trades, name), getattr(slow.trades, name)
        assert a.dtype == b.dtype and a.shape == b.shape and (a == b).all(), name
    for name in ("index", "ts_ex", "ts_local", "first_id", "last_id", "prev_id", "seq", "is_snap", "skip"):
        assert (getattr(fast.book, name) == getattr(slow.book, name)).all(), name
    for name in ("bid_off", "bid_px", "bid_qty", "ask_off", "ask_px", "ask_qty"):
        a, b = getattr(fast.book, name), getattr(slow.book, name)
        # exact: the fast decimals equal float(text); NaN marks the levels of a rejected message
        assert a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


@pytest.mark.kernels
def test_bybit_fast_path_equals_the_general_path_on_valid_streams() -> None:
    from core.config import InstrumentConfig, SimConfig
    from sim import MarketSimulator
    from tests.bybit_msgs import random_stream

    _same_parse(random_stream(500, seed=5))
    sim = MarketSimulator(SimConfig(), InstrumentConfig())
    _same_parse([m for b in sim.batches(20 * 1_000_000_000) for m in b])


@pytest.mark.kernels
def test_bybit_fast_path_hands_anything_unusual_to_the_general_path() -> None:
    ok = book(10, 1_000, [(100.0, 1.0)], [(100.1, 2.0)])
    weird = [
        ok.replace('"65', '"-65').replace('"1.000"', '"-1.000"'),  # negative size
        ok.replace('"100.0"', '"1e2"'),  # exponent
        ok.replace('"100.0"', '"100.05"'),  # off tick
        ok.replace('"u":10', '"u":"10"'),  # u as a string
        ok.replace(',"u":10', ""),  # no u
        ok.replace('"type":"delta"', '"type":"other"'),
        ok.replace('"s":"BTCUSDT"', '"s":"ETHUSDT"'),
        ok.replace("orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT"),
        ok.replace('"b":[[', '"b":[ ['),  # whitespace
        ok.replace('"100.0"', '"10\\u0030.0"'),  # an escape
        ok.replace('"100.0"', '"100.0000000000000001"'),  # too many digits for the fast path
        ok.replace('"100.0"', '"100."'),
        ok.replace('"b":[["100.0","1.000"]]', '"b":[]'),  # empty side: valid
        ok[:-5],  # truncated
        ok.replace("delta", "snapshot").replace('"u":10', '"u":1'),
        ok.replace('"type":"delta",', ""),
        ok.replace('"seq":100', '"seq":"x"'),
        ok.replace(',"seq":100', ""),
        ok.replace('"ts":1002,', "").replace(',"cts":1000', ""),  # no time
        ok.replace('"ts":1002,', "").replace('"cts":1000', '"cts":"1000"'),
        ok.replace('"b":[["100.0","1.000"]],', ""),
        ok.replace(',"a":[["100.1","2.000"]]', ""),
        ok.replace('"a":[["100.1","2.000"]]', '"a":[["100.1"]]'),
        ok.replace('"b":[["100.0","1.000"]]', '"b":[["100.0" ,"1.000"]]'),
        ok.replace('"u":10', '"u":1234567890123456789012'),  # more digits than an int64
    ]
    msgs = [raw(ok, ms(1_000))] + [raw(w, ms(1_000 + i)) for i, w in enumerate(weird, 1)]
    _same_parse(msgs)


@pytest.mark.kernels
def test_bybit_trade_fast_path_hands_anything_unusual_to_the_general_path() -> None:
    ok = trades(1_000, [("Buy", 100.1, 0.5, "a-1"), ("Sell", 100.0, 1.25, "a-2")])
    weird = [
        ok.replace('"S":"Buy"', '"S":"buy"'),
        ok.replace('"i":"a-1",', ""),  # no trade id
        ok.replace('"i":"a-1"', '"i":17'),  # a number as trade id
        ok.replace('"T":1000,', '"T":1000,"T":1001,'),  # a repeated key: the last one counts
        ok.replace('"v":"0.500"', '"v":"0.000"'),  # zero size: rejected, with the text in the detail
        ok.replace('"v":"0.500"', '"v":"-0.5"'),
        ok.replace('"p":"100.1"', '"p":"1e2"'),
        ok.replace('"p":"100.1"', '"p":100.1'),  # a number, not a string
        ok.replace('"i":"a-1"', '"i":"a\\u002d1"'),  # an escape
        ok.replace('"i":"a-1"', '"i":"aé1"'),  # not ASCII
        ok.replace('"s":"BTCUSDT","S":"Buy"', '"s":"ETHUSDT","S":"Buy"'),
        ok.replace('"s":"BTCUSDT","S":"Buy",', ""),  # no symbol: valid
        ok.replace('"BT":false}]', '"BT":null,"x":{"y":1}}]'),  # a nested object
        ok.replace('"BT":false}]', '"BT":true,"n":12}]'),
        ok.replace('"T":1000', '"T":01000'),  # not JSON
        ok.replace('"T":1000', '"T":-1000'),
        ok.replace('"T":1000', '"T":1000.5'),
        ok.replace('"data":[', '"data": ['),  # whitespace
        ok.replace('"ts":1001', '"ts":1001,"topic":"publicTrade.BTCUSDT"'),  # the topic twice
        ok.replace('"type":"snapshot",', '"type":"snapshot","data":[],'),  # data twice
        ok.replace('"data":[', '"data":[1,'),
        '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[]}',
        '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":{}}',
        '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1}',
        '{"type":"snapshot","topic":"publicTrade.BTCUSDT","data":[]}',  # the topic not first
        ok + " ",
        ok[:-3],  # truncated
        ok[: ok.index('"i":"a-1"') + 7],  # ends inside a string
        '{"topic":"publicTrade.BTCUSDT","x":',
        '{"topic":"publicTrade.BTCUSDT","ts":1',
        ok.replace(',"type"', ';"type"'),
        ok.replace('"T":1000', '"T" :1000'),
        ok.replace('"s":"BTCUSDT","S":"Buy"', '"s":"BTCUSD","S":"Buy"'),
        ok.replace('"L":"PlusTick",', '"L":"PlusTick";'),
        ok.replace('},{"T"', '}{"T"'),
    ]
    msgs = [raw(ok, ms(1_000))] + [raw(w, ms(1_000 + i)) for i, w in enumerate(weird, 1)]
    _same_parse(msgs)
    assert bybit_trades_taken_fast(ok) and not bybit_trades_taken_fast(weird[0])


def bybit_trades_taken_fast(payload: str) -> bool:
    from market.events import RawBatch
    from market.venues import bybit_fast_trades

    batch = RawBatch.of([raw(payload, 1)])
    return bool(bybit_fast_trades.scan_trade_messages(batch.data, batch.offsets, "BTCUSDT").ok[0])


@pytest.mark.kernels
def test_bybit_fast_paths_leave_text_that_is_not_ascii_to_the_general_path() -> None:
    ok = book(10, 1_000, [(100.0, 1.0)], [(100.1, 2.0)])
    msgs = [
        raw(ok, ms(1_000)),
        raw(ok.replace('"cts"', '"note":"caf\u00e9","cts"'), ms(1_001)),  # valid JSON, not ASCII
        raw(ok.replace('"cts"', '"note":"\ud800","cts"'), ms(1_002)),  # a str that is not UTF-8: not JSON text
        raw(trades(1_000, [("Buy", 100.1, 0.5, "\u00e9")]), ms(1_003)),
    ]
    _same_parse(msgs)
    p = parse_bybit(*(m.payload for m in msgs))
    assert [(r.index, r.reason) for r in p.rejections] == [(2, "bad_json")]
    assert p.rejections[0].detail == msgs[2].payload[:80]
    assert p.trades.trade_id == ["\u00e9"]
