"""Compiled strategies (execution.compiled): a numba step inside the engine's loop decides as the
same rule run from Python between ``run_until`` calls, order for order and fill for fill (the rule:
the hftbacktest benchmark's quoting, bench/quoting.py, in both forms)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numba as nb
import numpy as np
import pytest

from bench.quoting import QuoteState, quote, quote_state, quote_step
from execution import compiled
from execution.compiled import CompiledStrategy
from execution.engine import Engine, Wake
from execution.market import Market
from execution.records import Arrays
from tests.conftest import sized
from tests.test_engine_scenarios import CFG, L, _random_market

pytestmark = pytest.mark.kernels

STEP = 40  # ns between quotes: the random markets move every 1-30 ns
QTY = 0.5
TAG = 7  # on every quote: the records carry it
QUICK = dataclasses.replace(CFG, rate_limit=0)


class Recorded(NamedTuple):
    quote: QuoteState
    woken: np.ndarray  # int64[cap]: local times the step ran
    n: np.ndarray  # int64[1]


@nb.njit()
def recorded_step(e: Arrays, s: Recorded, why: int) -> None:
    """The benchmark's quoting step (bench/quoting.py), noting the local time of each call."""
    s.woken[s.n[0]] = compiled.now(e)
    s.n[0] += 1
    quote_step(e, s.quote, why)


def python_quote(e: Engine, woken: list[int]) -> None:
    """The benchmark's quoting rule through the engine's Python methods, noting the time of each call."""
    woken.append(e.now)
    quote(e, QTY, TAG)


def _strategy(start: int, every: int, wake: int) -> CompiledStrategy:
    state = Recorded(quote_state(QTY, TAG), np.zeros(100_000, np.int64), np.zeros(1, np.int64))
    return CompiledStrategy(recorded_step, state, every, start, wake)


def _results(e: Engine) -> tuple[bytes, bytes, bytes]:
    return e.fills().tobytes(), e.orders().tobytes(), e.samples().tobytes()


def _end(m: Market) -> int:
    return int(max(m.books.ts_local[-1], m.trades.ts_local[-1])) + 100


@pytest.mark.parametrize("seed", [1, 2])
def test_a_compiled_step_on_a_timer_is_the_python_rule_between_run_until_calls(seed: int) -> None:
    m = _random_market(seed, sized(3000))
    start, end = int(m.books.ts_local[0]), _end(m)
    py = Engine(QUICK, L, sample_ns=500)
    py.load(m)
    woken: list[int] = []
    now = start
    while now < end:
        py.run_until(now)
        python_quote(py, woken)
        now += STEP
    py.run_until(end)
    ours = Engine(QUICK, L, sample_ns=500)
    ours.load(m)
    s = _strategy(start, STEP, 0)
    assert ours.drive(s, end) == Wake.NONE and ours.now == end
    assert len(py.orders()) > sized(200)  # the arrays grew inside the run: more than their first 64 rows
    assert _results(ours) == _results(py)
    assert list(s.state.woken[: s.state.n[0]]) == woken


def test_a_compiled_step_wakes_on_what_run_until_stops_on() -> None:
    m = _random_market(4, sized(2000))
    start, end = int(m.books.ts_local[0]), _end(m)
    wake = Wake.FILL | Wake.BOOK | Wake.END
    py = Engine(QUICK, L)
    py.load(m)
    woken: list[int] = []
    py.run_until(start)
    python_quote(py, woken)
    while (w := py.run_until(end, wake)) != Wake.NONE:
        python_quote(py, woken)
        if w & Wake.END:  # the end of the data wakes it a last time
            break
    ours = Engine(QUICK, L)
    ours.load(m)
    s = _strategy(start, end, int(wake))  # a timer that fires once, at the start
    assert ours.drive(s, end) & Wake.END
    assert list(s.state.woken[: s.state.n[0]]) == woken and len(woken) > sized(100)
    assert _results(ours) == _results(py)


def test_a_run_can_be_driven_in_pieces() -> None:
    m = _random_market(5, sized(1500))
    start, end = int(m.books.ts_local[0]), _end(m)
    whole, pieces = Engine(QUICK, L), Engine(QUICK, L)
    whole.load(m)
    pieces.load(m)
    a, b = _strategy(start, STEP, 0), _strategy(start, STEP, 0)
    whole.drive(a, end)
    for t in range(start + 333, end, 1000):
        pieces.drive(b, t)
    pieces.drive(b, end)
    assert _results(whole) == _results(pieces)
    assert int(pieces.arrays().state[0]["next_timer"]) >= end


def test_a_step_that_sends_too_much_is_refused() -> None:
    @nb.njit()
    def flood(e: Arrays, s: Recorded, why: int) -> None:
        for _ in range(compiled.MAX_REQUESTS + 1):
            compiled.submit(e, 1, 1.0, 99.0, compiled.LIMIT, True, 0)

    m = _random_market(6, 50)
    e = Engine(QUICK, L)
    e.load(m)
    s = CompiledStrategy(flood, _strategy(0, 0, 0).state, 10**9, int(m.books.ts_local[0]), 0)
    with pytest.raises(ValueError, match="MAX_REQUESTS"):
        e.drive(s, _end(m))
