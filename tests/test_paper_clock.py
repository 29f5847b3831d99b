"""The paper runner's clock: a decision happens at its time on the local clock and its order reaches
the paper exchange an entry latency later; on a live feed that time is the arrival of the tick that
made the decision due, in a replay the grid time + decision_delay (the backtester's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from core.config import AppConfig
from core.records import Book
from execution.backtest import make_strategy
from execution.strategy import Signal, Strategy
from execution.types import OrderKind
from execution.venue import Gateway
from live.loop import Loaded, Loop
from live.paper import PaperGateway
from live.runner import make_loop
from tests.conftest import ConfigFactory
from warehouse import journal as jr

MS = 1_000_000
S = 1_000 * MS
T0 = 1_700_000_000 * S  # a whole second
LEVELS = 20


@dataclass
class Recorder(Strategy):
    """Notes every decision (local time, grid time, the arrival of the book it sees) and buys 0.001 BTC
    at market on the first; it never works orders on a wake."""

    seen: list[tuple[int, int, int]] = field(default_factory=list)

    def on_decision(self, v: Gateway, s: Signal) -> None:
        self.seen.append((v.now, s.ts_ns, v.book().ts_local))
        if len(self.seen) == 1:
            v.submit(1, 0.001, kind=OrderKind.MARKET)

    def on_wake(self, v: Gateway) -> None:
        return None


class UpModel:
    """A stand-in for the model: P(up) 0.9 on every row, a buy signal."""

    feature_set = "test"
    profile = None
    feature_names: tuple[str, ...] = ()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.array([[0.9, 0.05]])

    def signal(self, proba: np.ndarray) -> np.ndarray:
        return np.ones(proba.shape[0], np.int8)


def book(k: int, latency_ns: int) -> Book:
    """Book update ``k``: stamped 50 ms + k * 100 ms after T0, received ``latency_ns`` later; the best bid
    is 50,000 + 0.1 k (so a fill's price names the book the exchange held), 1 BTC on each level."""
    ts_ex = T0 + 50 * MS + k * 100 * MS
    bid = round(50_000.0 + 0.1 * k, 1)
    bids = np.round(bid - 0.1 * np.arange(LEVELS), 1)
    asks = np.round(bid + 0.1 + 0.1 * np.arange(LEVELS), 1)
    ones = np.ones(LEVELS)
    return Book(ts_ex, ts_ex + latency_ns, 0, bids, ones, asks, ones.copy())


def make(cfg: AppConfig, journal: jr.Journal, live_feed: bool) -> tuple[Loop, Recorder]:
    base = make_strategy("baseline", cfg, 60 * S)
    strategy = Recorder(base.params, base.sizing, base.risk, name="recorder")
    gw = PaperGateway(cfg, None, 0, S)
    model = Loaded(cast(Any, UpModel()), "1", np.zeros(0, np.int64))
    return make_loop(cfg, gw, strategy, model, journal, paced=live_feed), strategy


def run(cfg: AppConfig, tmp_path: Path, live_feed: bool, latency_ns: int, n: int = 3_020) -> tuple[Loop, Recorder]:
    journal = jr.Journal(tmp_path / f"j-{live_feed}-{latency_ns}.sqlite", "unit")
    loop, strategy = make(cfg, journal, live_feed)
    for k in range(n):
        loop.on_tick(book(k, latency_ns))
    journal.close()
    return loop, strategy


def paper(loop: Loop) -> PaperGateway:
    assert isinstance(loop.gw, PaperGateway)
    return loop.gw


def test_an_order_decided_on_a_live_tick_reaches_the_exchange_at_its_arrival_plus_entry_latency(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    cfg = make_config(
        execution={"entry_latency": "5ms", "response_latency": "5ms"}, strategy={"decision_delay": "10ms"}
    )
    # the first valid row: 300 s of data after the first update (T0 + 50 ms), so the grid time T0 + 301 s
    g0 = T0 + 301 * S
    loop, strategy = run(cfg, tmp_path, live_feed=True, latency_ns=40 * MS)
    # g0 + 10 ms passed for the runner when update 3010 (stamped g0 + 50 ms) arrived, at g0 + 90 ms: the
    # decision is taken then, on the book received by then (that same update)
    assert strategy.seen[0] == (g0 + 90 * MS, g0, g0 + 90 * MS)
    order = paper(loop).engine.orders()[0]
    assert (order["ts_submit_local"], order["ts_arrive_ex"]) == (g0 + 90 * MS, g0 + 95 * MS)
    # the exchange filled it at g0 + 95 ms on the book it held then: update 3010's best ask
    fill = paper(loop).engine.fills()[0]
    assert (int(fill["ts_ex"]), float(fill["price"])) == (g0 + 95 * MS, round(50_000.0 + 301.0 + 0.1, 1))
    assert loop.rows.unarrived == loop.rows.timing.stale == loop.rows.superseded == 0
    decisions = list(jr.read(tmp_path / "j-True-40000000.sqlite", ["decision"]))
    assert [(d.ts_ns, d.data["grid_ns"]) for d in decisions] == [(g0 + 90 * MS, g0)]


def test_a_replay_decides_at_grid_time_plus_delay_as_the_backtester(make_config: ConfigFactory, tmp_path: Path) -> None:
    cfg = make_config(
        execution={"entry_latency": "5ms", "response_latency": "5ms"}, strategy={"decision_delay": "10ms"}
    )
    g0 = T0 + 301 * S
    loop, strategy = run(cfg, tmp_path, live_feed=False, latency_ns=40 * MS)
    # at g0 + 10 ms the last update received is 3009 (stamped g0 - 50 ms, received g0 - 10 ms)
    assert strategy.seen[0] == (g0 + 10 * MS, g0, g0 - 10 * MS)
    order = paper(loop).engine.orders()[0]
    assert (order["ts_submit_local"], order["ts_arrive_ex"]) == (g0 + 10 * MS, g0 + 15 * MS)
    fill = paper(loop).engine.fills()[0]
    assert (int(fill["ts_ex"]), float(fill["price"])) == (g0 + 15 * MS, round(50_000.0 + 300.9 + 0.1, 1))


def test_a_live_feed_running_late_by_more_than_stale_after_is_not_traded(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    # every update arrives 3 s after its stamp (a feed catching up): at their decision times the rows are
    # 3.05 s old, more than the risk manager's stale_after (2 s), though each book is fresh by its arrival
    cfg = make_config(risk={"stale_after": "2s"})
    loop, strategy = run(cfg, tmp_path, live_feed=True, latency_ns=3 * S, n=3_100)
    assert strategy.seen == [] and paper(loop).engine.orders().size == 0
    assert loop.rows.timing.stale == 9  # the rows of T0 + 301 .. 309 s, made due by updates 3010 .. 3090
    # 1.5 s late is not stale: the rows are decided, each 1.55 s after its grid time; the last one (T0 +
    # 309 s, due at 310.55 s) waits for an update stamped after that, which never comes
    loop, strategy = run(cfg, tmp_path, live_feed=True, latency_ns=1_500 * MS, n=3_100)
    assert [(s[1] - T0, s[0] - s[1]) for s in strategy.seen] == [((301 + i) * S, 1_550 * MS) for i in range(8)]
    assert loop.rows.timing.stale == 0 and len(loop.scheduled) == 1


def test_a_silent_book_longer_than_the_max_gap_warms_up_again_and_says_so(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """Rows need their longest window (300 s) free of a book gap, as the batch build does: after a
    silence longer than ``max_gap`` the runner decides nothing until 300 s of new data, and its status
    line and health record say it is warming up again (not just "ACTIVE" with a count that stands)."""
    cfg = make_config()
    path = tmp_path / "journal.sqlite"
    journal = jr.Journal(path, "unit")
    loop, strategy = make(cfg, journal, live_feed=False)
    for k in range(3_100):
        loop.on_tick(book(k, 40 * MS))
    decided = len(strategy.seen)  # rows at T0 + 301 .. 309 s
    assert decided == 9 and "warming up" not in loop.status() and "latency p50" in loop.status()
    silence = 10 * S  # the book goes quiet for 10 s (a stall; longer than max_gap), then resumes

    def late(k: int) -> Book:
        b = book(k, 0)
        return b._replace(ts_ex=b.ts_ex + silence, ts_local=b.ts_ex + silence)

    for k in range(3_100, 3_100 + 1_000):
        loop.on_tick(late(k))
    # the rows of the silence's first max_gap (5 s) are as of the last book before it, as in the batch
    # build; then none, and 100 s of new data make none either
    quiet = [g for _, g, _ in strategy.seen[decided:]]
    assert quiet == [T0 + (310 + i) * S for i in range(cfg.features.max_gap // S)], quiet
    status = loop.status()
    assert "warming up again after a gap in the book: 100 of 300 s of data" in status, status
    assert "latency p50" in status  # the decisions before the gap keep their figures
    loop.health(late(4_100).ts_ex, late(4_100).ts_ex, {}, True)
    health = list(jr.read(path, ["health"]))[-1].data
    assert health["warming_up"] is True and 99 < health["warmed_s"] < 101, health
    for k in range(4_100, 4_100 + 2_100):  # 310 s after the silence: rows again
        loop.on_tick(late(k))
    assert len(strategy.seen) > decided + len(quiet) and "warming up" not in loop.status()
    journal.close()
