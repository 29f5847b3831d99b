"""The dashboard's figures from a journal: round trips (FIFO), realized / unrealized PnL, per-fill
slippage and markouts, sample sizes and intervals, sessions and ranges, which journal, a stopped
runner's health and position, the backtests of the model in use."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from core.timefmt import format_ns
from live.dashboard.app import create_app, pinned_journal
from live.dashboard.journal_view import JournalView
from live.dashboard.market_view import Fill, MarketView
from live.dashboard.stats import MIN_EVIDENCE, mean_interval, proportion
from live.dashboard.trades import RoundTrips
from warehouse.journal import Journal

NS = 1_000_000_000


def _client(cfg: Any, journal: Path | None = None) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(create_app(cfg, journal))


def test_round_trips_match_fifo_through_partial_exits_and_a_reversal() -> None:
    rt = RoundTrips()
    rt.add(1, +1, 100.0, 0.010, 0.010, 0)
    rt.add(2, +1, 110.0, 0.020, 0.020, 0)
    # a partial exit realizes the first entry first: 0.010 from 100, then 0.005 from 110
    assert rt.add(3, -1, 120.0, 0.015, 0.015, 0) == pytest.approx(0.010 * 20 + 0.005 * 10)
    (lot,) = rt.lots
    assert lot.qty == pytest.approx(0.015) and lot.price == 110.0
    # a sell larger than the position closes the round trip and opens a short with the rest
    assert rt.add(4, -1, 105.0, 0.025, 0.025, 1) == pytest.approx(0.015 * -5)
    (done,) = rt.closed
    assert (done.side, done.opened, done.closed, done.fills, done.session) == (1, 1, 4, 4, 1)
    assert done.qty == pytest.approx(0.030) and done.gross == pytest.approx(0.175)
    assert done.fees == pytest.approx(0.010 + 0.020 + 0.015 + 0.015)  # the reversing fill's fee split by quantity
    assert done.entry == pytest.approx(3.2 / 0.03) and done.exit == pytest.approx(112.5)
    assert done.net == pytest.approx(0.175 - 0.06)
    assert rt.current is not None and rt.current.side == -1 and rt.current.fees == pytest.approx(0.010)
    assert rt.position() == pytest.approx(-0.010)
    assert rt.unrealized(100.0) == pytest.approx(0.05) and math.isnan(rt.unrealized(math.nan))
    assert rt.realized(funding=0.02) == pytest.approx(0.175 - 0.07 - 0.02)


@settings(max_examples=200, deadline=None)
@given(
    hs.lists(
        hs.tuples(hs.sampled_from([1, -1]), hs.integers(1, 50), hs.floats(90.0, 110.0), hs.floats(0.0, 0.01)),
        min_size=1,
        max_size=40,
    ),
    hs.floats(90.0, 110.0),
)
def test_realized_plus_unrealized_is_the_equity_change_for_any_fills(
    fills: list[tuple[int, int, float, float]], mid: float
) -> None:
    rt, cash, position = RoundTrips(), 1000.0, 0.0
    for k, (side, lots, price, fee) in enumerate(fills):
        qty = lots / 1000
        rt.add(k, side, price, qty, fee, 0)
        cash -= side * qty * price + fee
        position += side * qty
    assert rt.position() == pytest.approx(position, abs=1e-9)
    equity = cash + position * mid
    assert rt.realized() + rt.unrealized(mid) == pytest.approx(equity - 1000.0, abs=1e-9)
    assert sum(t.net for t in rt.closed) + (rt.current.net if rt.current else 0.0) == pytest.approx(rt.realized())


def test_a_mean_has_a_t_interval_and_a_share_a_wilson_interval_each_with_its_n() -> None:
    e = mean_interval([1.0, 2.0, 3.0, 4.0, math.nan])
    assert e.n == 4 and e.value == 2.5  # NaN (a fill without a mid) is left out
    assert (e.lo, e.hi) == pytest.approx((2.5 - 3.182446 * 1.290994 / 2, 2.5 + 3.182446 * 1.290994 / 2), abs=1e-5)
    one = mean_interval([0.7])
    assert one.n == 1 and one.value == 0.7 and math.isnan(one.lo) and not one.enough
    assert mean_interval([]).n == 0 and math.isnan(mean_interval([]).value)
    p = proportion(3, 10)
    assert p.n == 10 and p.value == 0.3 and (p.lo, p.hi) == pytest.approx((0.1078, 0.6032), abs=1e-4)
    assert proportion(0, 10).lo == 0.0 and proportion(10, 10).hi == 1.0 and proportion(0, 0).n == 0
    assert not proportion(1, MIN_EVIDENCE - 1).enough and proportion(1, MIN_EVIDENCE).enough
    assert proportion(1, 1).as_dict() == {"n": 1, "value": 1.0, "lo": pytest.approx(0.2065, abs=1e-4), "hi": 1.0,
                                          "enough": False}  # fmt: skip


def test_a_fill_gets_its_slippage_from_its_parents_first_order_and_markouts_from_the_mids_after_it() -> None:
    mv = MarketView([NS, 10 * NS])
    for s in range(0, 10):
        mv.on_book(s * NS, 0, 99.9 + s / 10, 100.1 + s / 10)  # mid 100.0 + s / 10
    mv.on_submit(9 * NS + NS // 10, 0, tag=1)  # the decision's mid: 100.9
    fill = Fill(10 * NS, 0, 1, +1, 101.0, 0.01, 0.0, True)
    mv.on_fill(fill, tag=1)
    assert fill.slippage_bps == pytest.approx((101.0 - 100.9) / 100.9 * 1e4)
    mv.on_book(11 * NS + NS // 5, 0, 101.9, 102.1)  # 1.2 s after: the nearest to +1 s within 0.5 s
    assert math.isnan(fill.markouts_bps[0])  # not resolved until the window has passed
    mv.on_book(12 * NS, 0, 150.0, 150.2)
    assert fill.markouts_bps[0] == pytest.approx((102.0 - 101.0) / 101.0 * 1e4)
    # the account's mark ((equity - cash) / position) is a mid too: 4 s late, within 10 s / 2
    mv.on_account(24 * NS, 0, equity=1000.0, cash=0.0, position=10.0)
    mv.on_book(26 * NS, 0, 150.0, 150.2)
    assert fill.markouts_bps[1] == pytest.approx((100.0 - 101.0) / 101.0 * 1e4)
    # a new session (a replay's clock starts anywhere) ends the wait of the fills before it
    waiting = Fill(27 * NS, 0, 3, +1, 150.0, 0.01, 0.0, True)
    mv.on_fill(waiting, tag=0)
    mv.on_book(1, 1, 10.0, 10.2)
    mv.on_book(28 * NS, 1, 10.0, 10.2)
    assert math.isnan(waiting.markouts_bps[0]) and math.isnan(waiting.slippage_bps)  # tag 0: no parent
    # an order too long after the last mid has no arrival mid: its fills no slippage
    mv.on_submit(31 * NS, 1, tag=1)  # 3 s after the last mid
    late = Fill(32 * NS, 1, 2, -1, 10.0, 0.01, 0.0, False)
    mv.on_fill(late, tag=1)
    assert math.isnan(late.slippage_bps)


def _session(
    j: Journal, t0: int, fills: list[tuple[int, int, float]], decisions: int = 0, stop: bool = True,
    account: tuple[float, float] = (100_000.0, 0.0),
) -> tuple[float, float]:  # fmt: skip
    """A session of decisions (bid/ask around 100), orders that fill at ``(seconds, side, price)``
    and the account after each fill; stopped (or not) at the end. Returns the account (cash, position)."""
    j.add("start", t0, mode="paper", source="sim", strategy="passive", model="1")
    cash, pos = account
    for k in range(decisions):
        j.add("decision", t0 + k * NS, p_up=0.1, p_down=0.1, direction=0, model_version="1", bid=99.95, ask=100.05)
    for k, (s, side, price) in enumerate(fills):
        oid = t0 // NS + k
        j.add("submit", t0 + s * NS - 1, oid, side=side, qty=0.1, price=price, order_kind="LIMIT", tag=k + 1)
        j.add("fill", t0 + s * NS, oid, side=side, price=price, qty=0.1, fee=0.01, maker=True, tag=k + 1)
        j.add("done", t0 + s * NS, oid, status="FILLED", price=price, qty=0.1, filled=0.1)
        cash -= side * 0.1 * price + 0.01
        pos += side * 0.1
        j.add("account", t0 + s * NS, equity=cash + pos * 100.0, position=pos, cash=cash, fees=0.0, funding=0.0,
              execution={"post_only_rejects": 0.0})  # fmt: skip
    if stop:
        j.add("stop", t0 + 3600 * NS, reason="operator command")
    j.commit()
    return cash, pos


def test_the_page_chooses_a_session_and_a_range_for_its_tables(make_config: Any, tmp_path: Path) -> None:
    cfg = make_config()
    path = cfg.resolve(cfg.live.journal_dir) / "paper-sim.sqlite"
    t0 = time.time_ns() - 7200 * NS
    account = _session(Journal(path, "older", "normal"), t0, [(10, 1, 99.0), (20, -1, 101.0), (30, 1, 100.0),
                                                              (40, -1, 100.5)])  # fmt: skip
    j = Journal(path, "newer", "normal")
    fills = [(10, 1, 100.0), (1500, -1, 100.2), (3000, 1, 100.1)]
    _session(j, t0 + 3600 * NS, fills, decisions=5, stop=False, account=account)
    j.close()
    c = _client(cfg)
    s = c.get("/api/state").json()
    assert [x["id"] for x in s["sessions"]] == ["newer", "older"] and s["selection"]["session"] == "newer"
    assert s["fill_history"]["total"] == 3 and s["order_history"]["total"] == 3
    older = c.get("/api/state", params={"session": "older"}).json()
    assert older["fill_history"]["total"] == 4 and older["round_trips"]["total"] == 2
    assert older["round_trips"]["net"] == pytest.approx(0.1 * 2 + 0.1 * 0.5 - 0.04)
    every = c.get("/api/state", params={"session": "all"}).json()
    assert every["fill_history"]["total"] == 7 and every["execution_stats"]["maker"]["n"] == 7
    # the last 15 minutes of the newer session: its newest fill only (the range ends at its newest record)
    recent = c.get("/api/state", params={"range": "15m"}).json()
    assert recent["fill_history"]["total"] == 1 and recent["selection"]["range_label"] == "last 15 min"
    assert recent["execution_stats"]["fills"] == 1 and recent["execution_stats"]["maker"]["n"] == 1
    # the split of the account: the long 0.1 bought at 100.1 marked at the mid 100.0
    a = s["account"]
    assert a["unrealized"] == pytest.approx(-0.01) and a["mark"] == pytest.approx(100.0)
    assert a["realized"] + a["unrealized"] == pytest.approx(a["pnl"], abs=1e-6)


def test_a_stopped_runner_holding_a_position_is_flagged_and_its_health_is_history(
    make_config: Any, tmp_path: Path
) -> None:
    cfg = make_config(monitor={"drift_min": 300})
    path = cfg.resolve(cfg.live.journal_dir) / "paper-bybit.sqlite"
    j = Journal(path, "s1", "normal")
    t0 = time.time_ns() - 1800 * NS  # half an hour ago
    _session(j, t0, [(5, 1, 100.0)], decisions=12, stop=False)
    j.add("health", t0 + 10 * NS, data_ts=t0 + 10 * NS, data_age_s=0.0, risk="ACTIVE", book_valid=True)
    j.add("stop", t0 + 11 * NS, reason="SIGINT")
    j.commit()
    j.close()
    s = _client(cfg).get("/api/state").json()
    r, h = s["runner"], s["health"]
    assert not r["running"] and r["stopped"] == "SIGINT" and r["risk"] == "ACTIVE"
    assert r["holding"]["position"] == pytest.approx(0.1) and r["holding"]["mark"] == pytest.approx(100.0)
    # "market data age 0.0 s" was true half an hour ago: now the data is half an hour old
    assert h["data_age_s"] == 0.0 and h["age_now_s"] >= 1789 and not h["live"]
    assert h["stopped_at"] == r["stopped_at"] == format_ns(t0 + 11 * NS)
    assert s["drift"]["psi"] == [] and s["drift"]["decisions"] == 12
    assert s["drift"]["why"].startswith("No drift figure yet: 12 of the 300 decisions")


def test_the_page_offers_every_journal_and_opens_the_newest_or_the_pinned_one(make_config: Any, tmp_path: Path) -> None:
    cfg = make_config()
    folder = cfg.resolve(cfg.live.journal_dir)
    for name, fills in (("paper-replay", [(5, 1, 100.0)]), ("paper-bybit", [(5, -1, 100.0), (6, -1, 100.0)])):
        j = Journal(folder / f"{name}.sqlite", name, "normal")
        _session(j, time.time_ns(), fills)
        j.close()
    old = time.time() - 600
    for f in folder.glob("paper-replay.sqlite*"):
        os.utime(f, (old, old))
    c = _client(cfg)
    s = c.get("/api/state").json()
    assert [x["name"] for x in s["journals"]] == ["paper-bybit", "paper-replay"]
    assert s["journal"]["name"] == "paper-bybit" and s["account"]["position"] == pytest.approx(-0.2)
    other = c.get("/api/state", params={"journal": "paper-replay"}).json()
    assert other["journal"]["name"] == "paper-replay" and other["account"]["position"] == pytest.approx(0.1)
    # only a listed name: anything else is the newest, never a path
    for bad in ("../../etc/passwd", "nope", str(folder / "paper-replay.sqlite")):
        assert c.get("/api/state", params={"journal": bad}).json()["journal"]["name"] == "paper-bybit"
    pinned = _client(cfg, folder / "paper-replay.sqlite").get("/api/state").json()
    assert pinned["journal"]["pinned"] and [x["name"] for x in pinned["journals"]] == ["paper-replay"]
    assert pinned_journal(cfg, "paper-sim") == folder / "paper-sim.sqlite"
    assert pinned_journal(cfg, "x/y.sqlite") == Path("x/y.sqlite")


def _report(folder: Path, version: str, feature_set: str = "fs1") -> None:
    import json

    folder.mkdir(parents=True)
    meta = {"model_version": version, "feature_set": feature_set, "strategy": "passive",
            "window": {"start": "2026-01-05T00:00:00.000Z", "end": "2026-01-06T00:00:00.000Z"}}  # fmt: skip
    metrics = {"net_pnl": 12.5, "sharpe": 1.2, "arrival_slippage_mean_bps": None, "fills": 40}
    (folder / "metrics.json").write_text(json.dumps({"meta": meta, "metrics": metrics}))
    (folder / "report.html").write_text(f"<html><body>backtest of v{version}</body></html>")


def test_the_backtests_of_the_model_in_use_are_listed_and_served_by_name_only(make_config: Any, tmp_path: Path) -> None:
    cfg = make_config()
    out = cfg.resolve(cfg.backtest.out)
    _report(out / "passive-v1-2026-01-05", "1")
    _report(out / "passive-v2-2026-01-05", "2")
    (tmp_path / "secret.html").write_text("not a report")
    path = cfg.resolve(cfg.live.journal_dir) / "paper-sim.sqlite"
    j = Journal(path, "s1", "normal")
    _session(j, time.time_ns(), [], decisions=1)
    j.close()
    c = _client(cfg)
    b = c.get("/api/state").json()["model"]["backtests"]
    assert [r["name"] for r in b["reports"]] == ["passive-v1-2026-01-05"]  # v1 is in use; v2's is not listed
    r = b["reports"][0]
    assert r["metrics"]["net_pnl"] == 12.5 and r["metrics"]["arrival_slippage_mean_bps"] is None
    assert "backtest of v1" in c.get(r["url"]).text
    assert "backtest of v2" in c.get("/backtests/passive-v2-2026-01-05").text  # a report folder: served
    for bad in ("..%2Fsecret.html", "%2E%2E", "nope", "passive-v1-2026-01-05%2Fmetrics.json", "%2Fetc%2Fpasswd"):
        assert c.get(f"/backtests/{bad}").status_code == 404, bad
    snapshot = c.app.state.snapshot
    for bad in ("..", "../secret.html", "/etc/passwd", "", "passive-v1-2026-01-05/../../secret.html"):
        assert snapshot.backtest_report(bad) is None, bad


def test_a_journal_view_reads_the_older_decisions_prices_on_its_first_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import live.dashboard.journal_view as jv

    monkeypatch.setattr(jv, "DECISIONS", 3)
    path = tmp_path / "paper-sim.sqlite"
    j = Journal(path, "s1", "normal")
    _session(j, 0, [], decisions=10)
    j.close()
    st = JournalView(path).refresh()
    assert len(st.decisions) == 3 and st.decision_count == 10 and st.model_decisions == 10
    assert [p.ts for p in st.market.prices] == [k * NS for k in range(10)]  # every decision's mid
    assert st.market.prices[0].mid == pytest.approx(100.0) and st.market.has_book
