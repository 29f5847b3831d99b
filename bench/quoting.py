"""The hftbacktest benchmark's quoting rule, in Python and as a compiled step (execution.compiled).

Keep one post-only buy at the best bid and one sell at the best ask; cancel every other live
order. The two forms decide alike, order for order (tests/test_compiled_strategy.py holds them
equal): the benchmark times both, and the test drives both on random markets.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from core.jit import kernel_jit
from execution import compiled
from execution.engine import Engine
from execution.records import Arrays
from execution.types import Side


def quote(engine: Engine, qty: float, tag: int = 0) -> None:
    """Keep one buy at the best bid and one sell at the best ask; cancel the others."""
    bid, ask = engine.best_bid, engine.best_ask
    if math.isnan(bid) or math.isnan(ask):
        return
    tick = engine.cfg.tick
    want = {int(Side.BUY): round(bid / tick), int(Side.SELL): round(ask / tick)}
    for o in engine.open_orders():
        if want.get(o.side) == round(o.price / tick):
            del want[o.side]
        else:
            engine.cancel(o.order_id)
    for side, k in want.items():
        engine.submit(side, qty, k * tick, tag=tag)


class QuoteState(NamedTuple):
    qty: np.ndarray  # float64[1]: the size of each quote
    tag: np.ndarray  # int64[1]: the tag of each quote


def quote_state(qty: float, tag: int = 0) -> QuoteState:
    """The compiled step's state for quotes of ``qty`` tagged ``tag``."""
    return QuoteState(np.array([qty], np.float64), np.array([tag], np.int64))


@kernel_jit()
def quote_step(e: Arrays, s: QuoteState, why: int) -> None:
    """``quote`` as a compiled step (execution.compiled): the same decisions in the same order."""
    bid, ask = compiled.best_bid(e), compiled.best_ask(e)
    if np.isnan(bid) or np.isnan(ask):
        return
    tick = compiled.tick_size(e)
    want_buy, want_sell = round(bid / tick), round(ask / tick)
    need_buy, need_sell = True, True
    first, end = compiled.live_orders(e)
    for row in range(first, end):
        if not compiled.is_live(e, row):
            continue
        side, k = compiled.order_side(e, row), round(compiled.order_price(e, row) / tick)
        if side > 0 and need_buy and k == want_buy:
            need_buy = False
        elif side < 0 and need_sell and k == want_sell:
            need_sell = False
        else:
            compiled.cancel(e, row + 1)
    if need_buy:
        compiled.submit(e, 1, s.qty[0], want_buy * tick, compiled.LIMIT, True, s.tag[0])
    if need_sell:
        compiled.submit(e, -1, s.qty[0], want_sell * tick, compiled.LIMIT, True, s.tag[0])
