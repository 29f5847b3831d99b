"""Execution-quality metrics on tiny hand-built runs: every expected value is worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from execution.quality import (
    EQUITY_DTYPE,
    RunRecord,
    arrival_slippage_bps,
    by_confidence,
    by_queue,
    compare,
    markout_bps,
    markout_curve,
    metrics,
)
from execution.stats import sharpe_inference
from execution.types import FILL_DTYPE, ORDER_DTYPE, PARENT_DTYPE, OrderKind, OrderStatus, RejectReason

S = 1_000_000_000

# A hand-built mid path (exchange clock, seconds -> mid); the data ends at 61 s.
PATH_S = (0.0, 1.0, 2.0, 11.0, 61.0)
PATH_MID = (1000.0, 1000.5, 1001.0, 999.0, 1002.0)


def fills_of(*rows: dict[str, Any]) -> np.ndarray:
    """Fill records from keyword rows: t (seconds), side, price, and optionally qty, tag, fee, maker, queue, order."""
    out = np.zeros(len(rows), FILL_DTYPE)
    for i, r in enumerate(rows):
        ts = round(r.get("t", 0.0) * S)
        out[i] = (
            ts,
            ts + 5_000_000,
            r.get("order", i),
            r.get("tag", 1),
            r["side"],
            r["price"],
            r.get("qty", 1.0),
            r.get("fee", 0.0),
            r.get("maker", True),
            r.get("queue", 0.0),
        )
    return out


def parents_of(*rows: dict[str, Any]) -> np.ndarray:
    """Parent records: tag, side, target, decision mid, and optionally filled, vwap, end_mid, confidence."""
    out = np.zeros(len(rows), PARENT_DTYPE)
    for i, r in enumerate(rows):
        out[i] = (
            r.get("tag", 1),
            0,
            r["side"],
            r.get("target", 1.0),
            r.get("mid", 1000.0),
            r.get("confidence", 0.6),
            r.get("filled", 0.0),
            r.get("vwap", math.nan),
            S,
            r.get("end_mid", math.nan),
            "test",
        )
    return out


def equity_of(values: Sequence[float], step_s: float = 60.0) -> np.ndarray:
    out = np.zeros(len(values), EQUITY_DTYPE)
    out["ts"] = np.arange(len(values)) * round(step_s * S)
    out["equity"] = values
    out["mid"] = 1000.0
    return out


def on_path(fills: np.ndarray, parents: np.ndarray | None = None, **kw: Any) -> RunRecord:
    """A run whose mids are the hand-built path."""
    return RunRecord(
        fills=fills,
        parents=parents if parents is not None else np.zeros(0, PARENT_DTYPE),
        mid_ts=(np.array(PATH_S) * S).astype(np.int64),
        mid=np.array(PATH_MID),
        **kw,
    )


def test_buy_filled_one_tick_below_decision_mid_as_maker_has_negative_slippage() -> None:
    run = on_path(fills_of({"side": 1, "price": 999.9}), parents_of({"side": 1, "mid": 1000.0}))
    # (999.9 - 1000) / 1000 = -1e-4 = -1 bp: the maker earned a tick
    assert arrival_slippage_bps(run)[0] == pytest.approx(-1.0, abs=1e-9)
    m = metrics(run)
    assert m["arrival_slippage_mean_bps"] == pytest.approx(-1.0, abs=1e-9)
    assert m["arrival_slippage_median_bps"] == pytest.approx(-1.0, abs=1e-9)


def test_sell_slippage_sign_median_and_quantity_weighting() -> None:
    parents = parents_of({"side": -1, "mid": 1000.0})
    fills = fills_of(
        {"side": -1, "price": 1000.2, "qty": 1.0},  # sold above the mid: -2 bps (a gain)
        {"side": -1, "price": 999.7, "qty": 3.0},  # sold below: +3 bps (a cost)
        {"side": -1, "price": 1000.1, "qty": 1.0},  # -1 bp
        {"side": -1, "price": 900.0, "tag": 99},  # no parent record: left out
    )
    run = on_path(fills, parents)
    slip = arrival_slippage_bps(run)
    assert slip[:3] == pytest.approx([-2.0, 3.0, -1.0], abs=1e-9)
    assert math.isnan(slip[3])
    m = metrics(run)
    assert m["arrival_slippage_mean_bps"] == pytest.approx(0.0, abs=1e-9)
    assert m["arrival_slippage_median_bps"] == pytest.approx(-1.0, abs=1e-9)
    assert m["arrival_slippage_qty_mean_bps"] == pytest.approx((-2.0 + 9.0 - 1.0) / 5.0, abs=1e-9)


MARKOUT_FILLS = fills_of(
    {"t": 0.5, "side": 1, "price": 1000.0},  # mids at 1.5 / 10.5 / 60.5 s: 1000.5, 1001, 999
    {"t": 1.0, "side": -1, "price": 1000.5},  # at 2 / 11 / 61 s (inclusive): 1001, 999, 1002
    {"t": 30.0, "side": 1, "price": 999.0},  # at 31 / 40 s: 999; 90 s is past the data end
)


def test_markouts_follow_the_hand_built_mid_path() -> None:
    run = on_path(MARKOUT_FILLS)
    assert markout_bps(run, 1.0) == pytest.approx([5.0, -0.5 / 1000.5 * 1e4, 0.0])
    assert markout_bps(run, 10.0) == pytest.approx([10.0, 1.5 / 1000.5 * 1e4, 0.0])
    sixty = markout_bps(run, 60.0)
    assert sixty[:2] == pytest.approx([-10.0, -1.5 / 1000.5 * 1e4])
    assert math.isnan(sixty[2])
    m = metrics(run)
    assert m["markout_1s_bps"] == pytest.approx((5.0 - 0.5 / 1000.5 * 1e4) / 3)
    assert m["markout_10s_bps"] == pytest.approx((10.0 + 1.5 / 1000.5 * 1e4) / 3)
    assert m["markout_60s_bps"] == pytest.approx((-10.0 - 1.5 / 1000.5 * 1e4) / 2)  # the cut-off fill is left out


def test_markout_curve_counts_fills_and_bands_the_mean() -> None:
    curve = markout_curve(on_path(MARKOUT_FILLS), (1.0, 60.0))
    assert list(curve["fills"]) == [3, 2]
    sixty = np.array([-10.0, -1.5 / 1000.5 * 1e4])
    half = 1.96 * np.std(sixty, ddof=1) / np.sqrt(2)
    assert curve["mean_bps"][1] == pytest.approx(sixty.mean())
    assert curve["lo_bps"][1] == pytest.approx(sixty.mean() - half)
    assert curve["hi_bps"][1] == pytest.approx(sixty.mean() + half)


def test_effective_spread_splits_into_realized_spread_and_impact() -> None:
    # A buy at 999.8 at 0.5 s: mid then 1000, mid 10 s later 1001.
    m = metrics(on_path(fills_of({"t": 0.5, "side": 1, "price": 999.8})))
    assert m["effective_spread_bps"] == pytest.approx(2 * (999.8 - 1000.0) / 1000.0 * 1e4)  # -4
    assert m["realized_spread_bps"] == pytest.approx(2 * (999.8 - 1001.0) / 1000.0 * 1e4)  # -24
    assert m["price_impact_bps"] == pytest.approx(2 * (1001.0 - 1000.0) / 1000.0 * 1e4)  # +20
    assert m["effective_spread_bps"] == pytest.approx(m["realized_spread_bps"] + m["price_impact_bps"])


def test_half_filled_parent_whose_price_ran_away_pays_the_unfilled_term() -> None:
    parents = parents_of({"side": 1, "target": 2.0, "mid": 1000.0, "filled": 1.0, "vwap": 999.9, "end_mid": 1010.0})
    fills = fills_of({"side": 1, "price": 999.9, "fee": 0.2})
    m = metrics(on_path(fills, parents))
    notional = 1000.0 * 2.0
    # unfilled: s * (P_end - P_d) * Q_unfilled = (1010 - 1000) * 1 = 10 USDT, exactly
    assert m["implementation_shortfall_unfilled_bps"] * notional / 1e4 == pytest.approx(10.0)
    assert m["implementation_shortfall_filled_bps"] == pytest.approx(-0.1 / notional * 1e4)  # -0.5 bp
    assert m["implementation_shortfall_fees_bps"] == pytest.approx(0.2 / notional * 1e4)  # 1 bp
    assert m["implementation_shortfall_bps"] == pytest.approx(50.5)  # 50 - 0.5 + 1


def test_implementation_shortfall_is_notional_weighted_over_parents() -> None:
    parents = parents_of(
        {"tag": 1, "side": 1, "target": 2.0, "mid": 1000.0, "filled": 1.0, "vwap": 999.9, "end_mid": 1010.0},
        # a sell filled in full 1 above the mid: gains 1 USDT; its NaN end mid does not matter
        {"tag": 2, "side": -1, "target": 1.0, "mid": 2000.0, "filled": 1.0, "vwap": 2001.0},
        # nothing filled (no VWAP), the price fell under a buy: an opportunity gain of 1 USDT
        {"tag": 3, "side": 1, "target": 1.0, "mid": 500.0, "end_mid": 499.0},
    )
    fills = fills_of({"side": 1, "price": 999.9, "fee": 0.2, "tag": 1}, {"side": -1, "price": 2001.0, "tag": 2})
    m = metrics(on_path(fills, parents))
    notional = 2000.0 + 2000.0 + 500.0
    assert m["implementation_shortfall_filled_bps"] == pytest.approx((-0.1 - 1.0) / notional * 1e4)
    assert m["implementation_shortfall_unfilled_bps"] == pytest.approx((10.0 - 1.0) / notional * 1e4)
    assert m["implementation_shortfall_bps"] == pytest.approx((-1.1 + 9.0 + 0.2) / notional * 1e4)


def test_maker_ratio_is_maker_notional_over_all_notional() -> None:
    fills = fills_of({"side": 1, "price": 999.9, "qty": 1.0}, {"side": -1, "price": 1000.5, "qty": 3.0, "maker": False})
    assert metrics(on_path(fills))["maker_ratio"] == pytest.approx(999.9 / (999.9 + 3001.5))


def test_fill_rates_reject_rate_and_order_ratios() -> None:
    orders = np.zeros(6, ORDER_DTYPE)
    orders["order_id"] = [1, 2, 3, 4, 5, 6]
    orders["post_only"] = [True, True, True, True, False, True]
    orders["kind"] = [OrderKind.LIMIT] * 4 + [OrderKind.MARKET, OrderKind.LIMIT]
    orders["status"] = [
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,  # partly filled first
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,  # post-only would take
        OrderStatus.FILLED,
        OrderStatus.REJECTED,  # rate limit: submitted post-only, not a post-only reject
    ]
    orders["reject"] = [0, 0, 0, RejectReason.POST_ONLY_WOULD_TAKE, 0, RejectReason.RATE_LIMIT]
    orders["filled"] = [1.0, 0.5, 0.0, 0.0, 1.0, 0.0]
    orders["amends"] = [2, 1, 0, 0, 0, 0]
    orders["ts_arrive_ex"] = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) * S
    fills = fills_of(
        {"t": 4.0, "side": 1, "price": 1000.0, "qty": 0.5, "order": 1},
        {"t": 3.0, "side": 1, "price": 1000.0, "qty": 0.5, "order": 1},  # order 1's first fill: 2 s after arrival
        {"t": 2.5, "side": 1, "price": 1000.0, "qty": 0.5, "order": 2},  # 0.5 s
        {"t": 5.0, "side": 1, "price": 1000.1, "qty": 1.0, "order": 5, "maker": False},  # 0 s
    )
    parents = parents_of({"tag": 1, "side": 1, "target": 2.0, "filled": 1.5}, {"tag": 2, "side": 1, "filled": 1.0})
    m = metrics(RunRecord(fills=fills, orders=orders, parents=parents, requests=9, rate_limit_rejects=1))
    assert m["orders"] == 6 and m["fills"] == 4
    assert m["fill_rate_count"] == pytest.approx(3 / 4)  # accepted 1, 2, 3, 5; filled 1, 2, 5
    assert m["fill_rate_qty"] == pytest.approx(2.5 / 3.0)
    assert m["post_only_reject_rate"] == pytest.approx(1 / 5)
    assert m["time_to_fill_median_s"] == pytest.approx(0.5)  # median of 2, 0.5, 0
    assert m["cancel_to_fill"] == pytest.approx(2 / 4)
    assert m["amend_to_fill"] == pytest.approx(3 / 4)
    assert m["requests"] == 9 and m["rate_limit_rejects"] == 1


def test_sharpe_and_sortino_use_one_minute_marks_and_the_starting_equity() -> None:
    # Sampled every 20 s; the 1-minute marks take every third sample; 320 s is a partial minute, dropped.
    values = [1000, 990, 1020, 1003, 1100, 950, 998, 997, 996, 1004, 1, 2, 1001, 3, 4, 1009, 5000]
    run = RunRecord(equity=equity_of(values, step_s=20.0))
    e = np.array([1000, 1003, 998, 1004, 1001, 1009], dtype=float)
    r = np.diff(e) / e[0]
    m = metrics(run)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(525600))
    assert m["sortino"] == pytest.approx(r.mean() / np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)) * np.sqrt(525600))


def test_sharpe_is_nan_with_one_return_or_flat_equity_and_sortino_without_a_loss() -> None:
    assert math.isnan(metrics(RunRecord(equity=equity_of([1000, 1010])))["sharpe"])
    flat = metrics(RunRecord(equity=equity_of([1000, 1000, 1000])))
    assert math.isnan(flat["sharpe"]) and math.isnan(flat["sortino"])
    rising = metrics(RunRecord(equity=equity_of([1000, 1001, 1003])))
    assert rising["sharpe"] == pytest.approx(0.0015 / np.std([0.001, 0.002], ddof=1) * np.sqrt(525600))
    assert math.isnan(rising["sortino"])


def test_max_drawdown_fraction_and_usdt_come_from_their_own_troughs() -> None:
    m = metrics(RunRecord(equity=equity_of([100, 110, 88, 105, 200, 170])))
    assert m["max_drawdown"] == pytest.approx(22 / 110)  # 0.2, not 30 / 200 = 0.15
    assert m["max_drawdown_usdt"] == pytest.approx(30.0)  # 200 -> 170, not 110 -> 88


def test_pnl_totals_and_turnover() -> None:
    fills = fills_of({"side": 1, "price": 999.9, "qty": 1.0}, {"side": -1, "price": 1000.5, "qty": 3.0})
    m = metrics(on_path(fills, equity=equity_of([1000, 1010, 1005]), fees=3.0, funding=1.0))
    assert m["net_pnl"] == pytest.approx(5.0)
    assert m["gross_pnl"] == pytest.approx(9.0)
    assert m["fees"] == 3.0 and m["funding"] == 1.0
    assert m["turnover"] == pytest.approx((999.9 + 3001.5) / 1005.0)


EXPECTED_KEYS = {
    "net_pnl", "gross_pnl", "fees", "funding", "sharpe", "sortino", "max_drawdown", "max_drawdown_usdt",
    "turnover", "orders", "fills", "requests", "post_only_rejects", "rate_limit_rejects", "fill_rate_count",
    "fill_rate_qty", "post_only_reject_rate", "maker_ratio", "arrival_slippage_mean_bps",
    "arrival_slippage_median_bps", "arrival_slippage_qty_mean_bps", "implementation_shortfall_bps",
    "implementation_shortfall_filled_bps", "implementation_shortfall_unfilled_bps",
    "implementation_shortfall_fees_bps", "effective_spread_bps", "realized_spread_bps", "price_impact_bps",
    "markout_1s_bps", "markout_10s_bps", "markout_60s_bps", "time_to_fill_median_s", "cancel_to_fill",
    "amend_to_fill", "net_pnl_marked", "position_end", "closeout_cost", "sharpe_se", "sharpe_lo", "sharpe_hi",
    "sharpe_psr", "returns_n", "arrival_slippage_lo_bps", "arrival_slippage_hi_bps", "arrival_slippage_n",
    "parents", "entries", "exits", "parent_shortfall_mean_bps", "parent_shortfall_lo_bps", "parent_shortfall_hi_bps",
    *(f"markout_{h}s_{k}" for h in (1, 10, 60) for k in ("lo_bps", "hi_bps", "n")),
}  # fmt: skip


def test_empty_run_gives_the_full_dict_without_exceptions() -> None:
    m = metrics(RunRecord())
    assert set(m) == EXPECTED_KEYS
    assert m["fills"] == 0 and m["orders"] == 0 and m["net_pnl"] == 0.0 and m["max_drawdown"] == 0.0
    assert math.isnan(m["maker_ratio"]) and math.isnan(m["markout_10s_bps"]) and math.isnan(m["sharpe"])
    assert by_confidence(RunRecord())["fills"].sum() == 0
    assert by_queue(RunRecord())["fills"].sum() == 0
    assert (markout_curve(RunRecord())["fills"] == 0).all()


def test_run_with_orders_but_no_fills_is_defined() -> None:
    orders = np.zeros(1, ORDER_DTYPE)
    orders["status"], orders["post_only"] = OrderStatus.CANCELLED, True
    m = metrics(on_path(fills_of(), parents_of({"side": 1, "end_mid": 1001.0}), orders=orders))
    assert set(m) == EXPECTED_KEYS
    assert m["fill_rate_count"] == 0.0 and m["post_only_reject_rate"] == 0.0
    assert m["implementation_shortfall_bps"] == pytest.approx(10.0)  # all unfilled: (1001 - 1000) / 1000
    assert math.isnan(m["cancel_to_fill"])


def test_by_confidence_buckets_parents_and_attributes_markout_pnl() -> None:
    parents = parents_of(
        {"tag": 1, "side": 1, "confidence": 0.6},
        {"tag": 2, "side": 1, "confidence": 0.7},
        {"tag": 3, "side": -1, "confidence": 0.8},
        {"tag": 4, "side": 1, "confidence": 0.9},
    )
    fills = fills_of(
        {"t": 0.5, "side": 1, "price": 1000.0, "qty": 1.0, "fee": 0.1, "tag": 1},  # 60 s: (999 - 1000) * 1
        {"t": 1.0, "side": -1, "price": 1000.5, "qty": 2.0, "fee": 0.2, "tag": 3},  # 60 s: -(1002 - 1000.5) * 2
        {"t": 30.0, "side": 1, "price": 999.0, "qty": 1.0, "fee": 0.1, "tag": 4},  # 60 s past the end: fee only
    )
    rows = by_confidence(on_path(fills, parents), buckets=2)[:2]
    assert list(rows["lo"]) == pytest.approx([0.6, 0.75]) and list(rows["hi"]) == pytest.approx([0.75, 0.9])
    assert list(rows["parents"]) == [2, 2] and list(rows["fills"]) == [1, 2]
    assert list(rows["filled_qty"]) == pytest.approx([1.0, 3.0])
    assert list(rows["markout_10s_bps"]) == pytest.approx([10.0, (1.5 / 1000.5 * 1e4 + 0.0) / 2])
    assert list(rows["pnl_usdt"]) == pytest.approx([-1.0 - 0.1, -3.0 - 0.2 - 0.1])


def test_exits_have_no_confidence_and_their_own_row_without_breaking_the_buckets() -> None:
    parents = parents_of(
        {"tag": 1, "side": 1, "confidence": 0.6},
        {"tag": 2, "side": -1, "confidence": math.nan},  # the exit of tag 1
        {"tag": 3, "side": 1, "confidence": 0.8},
        {"tag": 4, "side": -1, "confidence": math.nan},
    )
    fills = fills_of(
        {"t": 0.5, "side": 1, "price": 1000.0, "fee": 0.1, "tag": 1},
        {"t": 1.0, "side": -1, "price": 1000.5, "fee": 0.1, "tag": 2},
        {"t": 2.0, "side": 1, "price": 1001.0, "fee": 0.1, "tag": 3},
    )
    rows = by_confidence(on_path(fills, parents), buckets=2)
    assert list(rows["lo"][:2]) == pytest.approx([0.6, 0.7]) and list(rows["hi"][:2]) == pytest.approx([0.7, 0.8])
    assert list(rows["parents"]) == [1, 1, 2] and list(rows["fills"]) == [1, 1, 1]
    assert math.isnan(rows["lo"][2]) and math.isnan(rows["hi"][2])  # the exits' row
    assert rows["pnl_usdt"][2] == pytest.approx(-(1002.0 - 1000.5) - 0.1)  # sold at 1000.5, 1002 at 61 s
    m = metrics(on_path(fills, parents))
    assert (m["parents"], m["entries"], m["exits"]) == (4, 2, 2)


def test_by_queue_buckets_maker_fills_by_queue_ahead() -> None:
    fills = fills_of(
        {"t": 0.5, "side": 1, "price": 1000.0, "queue": 0.05},
        {"t": 1.0, "side": -1, "price": 1000.5, "queue": 0.3},
        {"t": 30.0, "side": 1, "price": 999.0, "queue": 0.3},
        {"t": 0.5, "side": 1, "price": 1000.0, "queue": 7.0},
        {"t": 0.5, "side": 1, "price": 990.0, "queue": 0.05, "maker": False},  # a taker: no queue, left out
    )
    rows = by_queue(on_path(fills), edges=(0.0, 0.1, 0.5))
    assert list(rows["fills"]) == [1, 2, 1]
    assert rows["hi"][-1] == math.inf
    assert list(rows["markout_10s_bps"]) == pytest.approx([10.0, (1.5 / 1000.5 * 1e4 + 0.0) / 2, 10.0])
    assert rows["markout_60s_bps"][1] == pytest.approx(-1.5 / 1000.5 * 1e4)  # the 30 s fill is cut off


def test_compare_table_shows_both_names_and_the_relative_change() -> None:
    a = {"net_pnl": 10.0, "sharpe": -1.0, "fills": 4, "maker_ratio": math.nan}
    b = {"net_pnl": 15.0, "sharpe": -0.5, "fills": 4, "extra": 1.0}
    table = compare(a, b, ("baseline-run", "passive-run"))
    assert "baseline-run" in table and "passive-run" in table
    lines = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert lines["net_pnl"].endswith("+50.0%")
    assert lines["sharpe"].endswith("+50.0%")  # from a negative baseline, improvement keeps its sign
    assert lines["fills"].endswith("+0.0%")
    assert lines["extra"].split()[1] == "-"  # missing in a


def test_run_record_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="dtype"):
        RunRecord(fills=np.zeros(1, ORDER_DTYPE))
    with pytest.raises(ValueError, match="backwards"):
        RunRecord(mid_ts=np.array([2, 1], np.int64), mid=np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="duplicate"):
        RunRecord(parents=parents_of({"side": 1}, {"side": 1}))


def test_a_position_left_open_is_closed_out_in_the_headline_pnl_and_the_last_minute() -> None:
    eq = equity_of([1000.0, 1010.0, 1030.0])
    eq["position"] = [0.0, 1.0, 1.0]
    m = metrics(RunRecord(equity=eq, closeout_cost=4.0))
    assert m["net_pnl_marked"] == 30.0 and m["net_pnl"] == 26.0 and m["closeout_cost"] == 4.0
    assert m["position_end"] == 1.0 and m["returns_n"] == 2
    r = np.array([10.0, 16.0]) / 1000.0  # the close-out comes off the last minute: 1030 - 4
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(525_600))


def test_the_unfilled_part_is_priced_at_the_signal_horizon() -> None:
    parents = parents_of({"side": 1, "target": 2.0, "filled": 1.0, "vwap": 1000.0, "mid": 1000.0, "end_mid": 1000.5})
    run = on_path(fills_of({"t": 0.5, "side": 1, "price": 1000.0}), parents, horizon_ns=11 * S)
    # decision at 0 s, horizon 11 s: the mid then is 999.0; 1 BTC unfilled: (999 - 1000) * 1 over 2000 USDT
    assert metrics(run)["implementation_shortfall_unfilled_bps"] == pytest.approx(-1.0 / 2000.0 * 1e4)
    no_horizon = on_path(fills_of({"t": 0.5, "side": 1, "price": 1000.0}), parents)
    assert metrics(no_horizon)["implementation_shortfall_unfilled_bps"] == pytest.approx(0.5 / 2000.0 * 1e4)


def test_sharpe_comes_with_its_standard_error_interval_and_psr() -> None:
    m = metrics(RunRecord(equity=equity_of([1000, 1001, 1003, 1002, 1005, 1006])))
    r = np.diff([1000, 1001, 1003, 1002, 1005, 1006]) / 1000.0
    inf = sharpe_inference(r)
    k = math.sqrt(525_600)
    assert m["sharpe_se"] == pytest.approx(inf.se * k) and m["sharpe_psr"] == pytest.approx(inf.psr)
    assert m["sharpe_lo"] == pytest.approx(m["sharpe"] - 1.96 * m["sharpe_se"]) and m["returns_n"] == 5
