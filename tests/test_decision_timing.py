"""Backtest decisions happen at grid time + decision_delay on the local clock, on what has arrived by then."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from execution.backtest import Signals, engine_config, make_strategy, replay
from execution.engine import Engine
from execution.market import market_data
from execution.strategy import Baseline, Signal
from execution.venue import Gateway
from tests.conftest import ConfigFactory

MS = 1_000_000
S = 1_000 * MS


@dataclass
class Recorder(Baseline):
    """Baseline's state, but it only notes each decision: (local time, grid time, the book's arrival)."""

    seen: list[tuple[int, int, int]] = field(default_factory=list)

    def on_decision(self, v: Gateway, s: Signal) -> None:
        self.seen.append((v.now, s.ts_ns, v.book().ts_local))


def test_a_row_whose_event_arrives_after_its_decision_time_is_not_decided_on(make_config: ConfigFactory) -> None:
    cfg = make_config()
    delay = 10 * MS
    # book events (exchange, local): the one stamped 995 ms arrives at 1,020 ms, after 1 s + 10 ms
    ex = [500 * MS, 995 * MS, 1_500 * MS, 1_900 * MS]
    local = [502 * MS, 1_020 * MS, 1_502 * MS, 1_902 * MS]
    px = [[100.0], [100.0], [100.1], [100.0]]
    m = market_data(ex, local, px, [[1.0]] * 4, [[p[0] + 0.1] for p in px], [[1.0]] * 4)
    grid = np.array([1 * S, 2 * S], np.int64)
    signals = Signals(grid, np.full(2, 0.9), np.full(2, 0.05), np.ones(2, np.int8), np.full(2, 1e-4))
    base = make_strategy("baseline", cfg, 60 * S)
    strategy = Recorder(base.params, base.sizing, base.risk, name="recorder")
    run = replay(Engine(engine_config(cfg), 1), [m], signals, strategy, delay)
    # only the 2 s row: at 1.010 s the row of 1 s was not complete (its 995 ms update was still on its way)
    assert strategy.seen == [(2 * S + delay, 2 * S, 1_902 * MS)]
    assert run.meta["rows_not_arrived"] == 1


def test_the_merged_arrivals_equal_a_sort_of_both_streams() -> None:
    """execution.backtest._arrivals (one pass over the two sorted streams) against the plain numpy
    reference: a stable sort of both, the running latest of max(local, exchange) and the previous block's."""
    from execution.backtest import _arrivals

    rng = np.random.default_rng(4)
    b_ex = np.sort(rng.integers(0, 1_000, 300))  # ties within and across the streams
    t_ex = np.sort(rng.integers(0, 1_000, 200))
    b_local, t_local = b_ex + rng.integers(-5, 40, 300), t_ex + rng.integers(-5, 40, 200)
    for since in (np.iinfo(np.int64).min, 900):
        ex, out = np.empty(500, np.int64), np.empty(500, np.int64)
        _arrivals(b_ex, b_local, t_ex, t_local, since, ex, out)
        all_ex, all_local = np.concatenate([b_ex, t_ex]), np.concatenate([b_local, t_local])
        order = np.argsort(all_ex, kind="stable")
        want = np.maximum(np.maximum.accumulate(np.maximum(all_local[order], all_ex[order])), since)
        assert (ex == all_ex[order]).all() and (out == want).all()
        assert (out >= ex).all() and (np.diff(out) >= 0).all()
