"""Our matching engine side by side with hftbacktest: replay speed and fills on a real recording.

Both tools replay the same MarketData, the two Binance USD-M BTCUSDT episodes of ../shared/data
(imported once with the file source into warehouses cached in bench/.cache, read back with
load_market, top 20 levels), with the same quoting rule: every 100 ms of local time, keep one
post-only 0.001 BTC buy at the local best bid and one sell at the best ask, cancelling an order
whose price is no longer the best. Shared settings: constant 5 ms entry and 5 ms response latency
(EngineConfig's), the queue model p = 1 - (front / (front + back))^2 (ours: QueueModel.PROB with
queue_power 2; hftbacktest: ``power_prob_queue_model3(2)``, the same function; its
``power_prob_queue_model`` is f(back) / (f(back) + f(front))), tick 0.1, lot 0.001, maker 0.02 % /
taker 0.055 %, and hftbacktest's touch rule (ours: FillRule.HFTBACKTEST: an opposite best that
reaches an order fills all of it, and the book is not netted for the prints since its last event;
our default, FillRule.CAPPED, fills only what that best shows). hftbacktest runs its
no-partial-fill exchange: one-lot orders cannot fill partially, and its partial-fill exchange
stops with InvalidOrderStatus when a fill exactly uses up an order (nkaz001/hftbacktest issues
301, 312), which one-lot orders hit at once. Our rate limit is off: hftbacktest has none.

hftbacktest (pinned in bench/requirements-hftbacktest.txt) is installed by ``make bench`` with
``pip install --no-deps --target bench/.cache/hbt``, never into .venv; ``run`` puts that folder on
sys.path. It runs on .venv's numpy and numba (it declares numpy < 2.3, .venv has 2.4; the parts used
here, Rust behind ctypes driven from numba, work with it).

Timing: wall time of the replay loop alone (loading, the event conversion and the backtester's
construction excluded), after a warm-up run on a slice that compiles both sides; the median of
five runs. Each tool drives its strategy from compiled code: ours as a compiled step the engine's
loop calls every 100 ms (execution.compiled, ``Engine.drive``), hftbacktest's from a numba function
around ``elapse``; the row ``ours-python`` runs the same rule from Python between ``run_until``
calls (what a research strategy pays). Events are the MarketData's book events + trades, for all;
hftbacktest's own row count (one row per changed level) is shown.

Why the fill counts could differ (on these recordings they match, order for order):
- Derived depth events: hftbacktest takes per-level changes, the warehouse keeps top-20 snapshots.
  Each snapshot becomes one event per level whose size changed plus a zero-size event for every
  level gone from the visible range; a level that only slid beyond the 20th keeps the size
  hftbacktest last saw (our engine calls it not visible). Several changes at one price between two
  snapshots arrive as one, in both tools.
- Queue model details: the same estimate, but our engine fills a print at our price by whole lots
  of its excess over the queue ahead and hands a print's volume out once across our orders;
  hftbacktest fills the whole order once the excess reaches a lot, and a print through our price
  fills it whatever its size.
- Event order and clocks: our engine applies a trade before a book event at the same exchange
  time, and market events before request arrivals; the conversion puts trades first, the other
  tie is hftbacktest's own. Our engine delivers a book locally at max(ts_local, ts_ex, previous
  delivery); the conversion gives hftbacktest those local stamps, so both strategies see the same
  book at the same time.
- Counting: ours counts fills at the exchange, hftbacktest in its local state (fills reported by
  the end of the data). Our engine also records zero-size fills (~1e-17 BTC, float residue let
  through by execution.records.whole_lots); they are not counted.
"""

from __future__ import annotations

import importlib
import math
import shutil
import statistics
import sys
import time
from types import ModuleType
from typing import Any, NamedTuple

import numba as nb
import numpy as np

from bench.common import CACHE, ROOT, SHARED, entry
from core.config import AppConfig, load_config
from execution import compiled
from execution.compiled import Arrays, CompiledStrategy
from execution.engine import Engine
from execution.market import MarketData
from execution.types import EngineConfig, FillRule, QueueModel, Side
from market.sources.files import FileSource
from pipelines.replay import load_market
from warehouse.ingest import run_ingest

DATA = SHARED / "binance-usdm-btcusdt"
HBT_DIR = CACHE / "hbt"  # pip install --target, by `make bench`
EPISODES = (
    ("2023-04-04", ("btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz")),
    ("2024-07-18", ("btcusdt_20240718.gz", "btcusdt_20240719.gz")),
)
VENUE = "binance-usdm"  # the venue the file source stores the recordings under
LEVELS = 20
STEP_NS = 100_000_000
QTY = 0.001
REPEAT = 5
WARMUP_EVENTS = 5000
CONFIG = EngineConfig(queue_model=QueueModel.PROB, queue_power=2.0, rate_limit=0, fill_rule=FillRule.HFTBACKTEST)

# hftbacktest's order constants (hftbacktest.order), compiled into the numba strategy below;
# _hftbacktest() checks them against the installed package.
HBT_BUY, HBT_SELL, HBT_GTX, HBT_LIMIT = 1, -1, 1, 0
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # hftbacktest's best tick of an empty side


class Run(NamedTuple):
    seconds: float
    orders: int
    fills: int
    filled: float  # BTC


# --- data ------------------------------------------------------------------------------------------


def _episode(name: str, files: tuple[str, ...]) -> MarketData:
    """The episode's MarketData, from a warehouse built once in bench/.cache."""
    base = load_config(ROOT / "config.yaml")
    directory = CACHE / f"binance-{name}"
    wh = base.warehouse.model_copy(
        update={"path": directory / "l2.duckdb", "spool_dir": directory / "spool", "snapshot_levels": LEVELS}
    )
    cfg = base.model_copy(update={"warehouse": wh})
    marker = directory / "built"
    if not marker.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        result = run_ingest(FileSource([DATA / f for f in files]), cfg, detail=f"bench {name}")
        if result.status != "completed":
            raise RuntimeError(f"import of {name} failed: {result.error}")
        marker.write_text(f"{result.summary()}\n")
    # load_market reads the configured pair; the recordings are Binance's (model_copy skips validation)
    pair: AppConfig = cfg.model_copy(update={"instrument": cfg.instrument.model_copy(update={"venue": VENUE})})
    return load_market(pair, None, None, LEVELS)


def _delivery(market: MarketData) -> np.ndarray:
    """Local delivery time of each book event in our engine: max(ts_local, ts_ex, the previous one)."""
    return np.maximum.accumulate(np.maximum(market.book_ts_local, market.book_ts_ex))


def _slice(market: MarketData, n: int) -> MarketData:
    """The first ``n`` book events and the trades up to the last of them (the warm-up data)."""
    cut = int(np.searchsorted(market.trade_ts_ex, market.book_ts_ex[n - 1], side="right"))
    books = {f: getattr(market, f)[:n] for f in market._fields if not f.startswith("trade")}
    trades = {f: getattr(market, f)[:cut] for f in market._fields if f.startswith("trade")}
    return market._replace(**books, **trades)


# --- our engine ------------------------------------------------------------------------------------


def _quote(engine: Engine) -> None:
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
        engine.submit(side, QTY, k * tick)


class QuoteState(NamedTuple):
    qty: np.ndarray  # float64[1]: the size of each quote


@nb.njit()
def _quote_step(e: Arrays, s: QuoteState, why: int) -> None:
    """``_quote`` as a compiled step (execution.compiled): the same decisions in the same order."""
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
        compiled.submit(e, 1, s.qty[0], want_buy * tick, compiled.LIMIT, True, 0)
    if need_sell:
        compiled.submit(e, -1, s.qty[0], want_sell * tick, compiled.LIMIT, True, 0)


def _ours(market: MarketData, python: bool = False) -> Run:
    """Our engine with the quoting rule: compiled into the engine's loop, or (``python``) run from
    Python between ``run_until`` calls."""
    engine = Engine(CONFIG, market.levels)
    engine.load(market)
    now = int(market.book_ts_local[0])
    end = int(max(market.book_ts_ex[-1], _delivery(market)[-1], market.trade_ts_ex[-1])) + 1
    strategy = CompiledStrategy(_quote_step, QuoteState(np.array([QTY])), STEP_NS, now, 0)
    t0 = time.perf_counter()
    if python:
        while now < end:
            engine.run_until(now)
            _quote(engine)
            now += STEP_NS
        engine.run_until(end)
    else:
        engine.drive(strategy, end)
    seconds = time.perf_counter() - t0
    qty = engine.fills()["qty"]
    real = qty[qty >= CONFIG.lot / 2]  # leaves out float-residue fills of ~1e-17 BTC (records.whole_lots)
    return Run(seconds, len(engine.orders()), len(real), float(real.sum()))


# --- hftbacktest -----------------------------------------------------------------------------------


def _hftbacktest() -> ModuleType | None:
    """The hftbacktest package from bench/.cache/hbt, or None when it is not installed there."""
    if not (HBT_DIR / "hftbacktest").is_dir():
        return None
    if str(HBT_DIR) not in sys.path:
        sys.path.append(str(HBT_DIR))
    hbt = importlib.import_module("hftbacktest")
    order = importlib.import_module("hftbacktest.order")
    assert (order.BUY, order.SELL, order.GTX, order.LIMIT) == (HBT_BUY, HBT_SELL, HBT_GTX, HBT_LIMIT)
    return hbt


def _side_changes(
    held: dict[int, float], ticks: list[int], qtys: list[float], full: bool, bid: bool
) -> tuple[list[tuple[int, float]], list[int]]:
    """(levels to set, levels to delete) turning what hftbacktest holds into one side of a snapshot.

    A held level is deleted when it lies within the shown range (or anywhere, when the side shows
    fewer than ``full`` levels) and is not shown; beyond the last shown level it is left alone."""
    shown = dict(zip(ticks, qtys, strict=True))
    if not full or not ticks:
        gone = [k for k in held if k not in shown]
    elif bid:
        gone = [k for k in held if k >= ticks[-1] and k not in shown]
    else:
        gone = [k for k in held if k <= ticks[-1] and k not in shown]
    for k in gone:
        del held[k]
    changed = [(k, q) for k, q in shown.items() if held.get(k) != q]
    held.update(changed)
    return changed, gone


def _hbt_events(hbt: ModuleType, market: MarketData, tick: float) -> np.ndarray:
    """hftbacktest's event array: per-level depth changes between consecutive snapshots, and trades.

    Depth rows carry the exchange time and our engine's local delivery time (both flags); trades
    are exchange-only (the quoting rule reads no trades). Trades precede book rows at equal
    exchange time, as in our engine; deletions precede updates within a snapshot, so the book
    never crosses in between."""
    depth, exch, local = int(hbt.DEPTH_EVENT), int(hbt.EXCH_EVENT), int(hbt.LOCAL_EVENT)
    buy, sell = int(hbt.BUY_EVENT), int(hbt.SELL_EVENT)
    rows: list[tuple[int, int, int, float, float]] = []  # ev, exch_ts, local_ts, px, qty
    held: tuple[dict[int, float], dict[int, float]] = ({}, {})
    delivered = _delivery(market).tolist()
    for i, (ts, loc) in enumerate(zip(market.book_ts_ex.tolist(), delivered, strict=True)):
        sides = []
        for j, (px, qty, flag) in enumerate(
            ((market.bid_px[i], market.bid_qty[i], buy), (market.ask_px[i], market.ask_qty[i], sell))
        ):
            ok = ~np.isnan(px)
            ticks = np.rint(px[ok] / tick).astype(np.int64).tolist()
            changed, gone = _side_changes(held[j], ticks, qty[ok].tolist(), len(ticks) == LEVELS, j == 0)
            sides.append((flag, changed, gone))
        ev = depth | exch | local
        for flag, _, gone in sides:
            rows.extend((ev | flag, ts, loc, k * tick, 0.0) for k in gone)
        for flag, changed, _ in sides:
            rows.extend((ev | flag, ts, loc, k * tick, q) for k, q in changed)
    book = np.zeros(len(rows), hbt.event_dtype)
    if rows:
        cols = list(zip(*rows, strict=True))
        for name, col in zip(("ev", "exch_ts", "local_ts", "px", "qty"), cols, strict=True):
            book[name] = col
    trades = np.zeros(len(market.trade_ts_ex), hbt.event_dtype)
    trades["ev"] = np.where(market.trade_side > 0, buy, sell) | int(hbt.TRADE_EVENT) | exch
    trades["exch_ts"], trades["local_ts"] = market.trade_ts_ex, market.trade_ts_local
    trades["px"], trades["qty"] = market.trade_price, market.trade_qty
    merged = np.concatenate([trades, book])
    out = merged[np.argsort(merged["exch_ts"], kind="stable")]
    importlib.import_module("hftbacktest.data.validation").validate_event_order(out)
    return out


@nb.njit()
def _hbt_quote(hbt: Any, start: int, step: int, qty: float) -> tuple[int, int]:
    """The quoting rule inside hftbacktest's loop: (orders sent, the last elapse code; 1 = end of data)."""
    sent = 0
    code = hbt.elapse(0)  # starts the clock at the first event
    now = hbt.current_timestamp
    first = start + max(-((start - now) // step), 0) * step  # our engine's grid: start + k * step
    if code == 0 and first > now:
        code = hbt.elapse(first - now)
    while code == 0:
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bid, ask, tick = depth.best_bid_tick, depth.best_ask_tick, depth.tick_size
        if bid != INT64_MIN and ask != INT64_MAX:
            have_buy, have_sell = False, False
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                if o.side == HBT_BUY and o.price_tick == bid:
                    have_buy = True
                elif o.side == HBT_SELL and o.price_tick == ask:
                    have_sell = True
                elif o.cancellable:
                    hbt.cancel(0, o.order_id, False)
            if not have_buy:
                sent += 1
                hbt.submit_buy_order(0, sent, bid * tick, qty, HBT_GTX, HBT_LIMIT, False)
            if not have_sell:
                sent += 1
                hbt.submit_sell_order(0, sent, ask * tick, qty, HBT_GTX, HBT_LIMIT, False)
        code = hbt.elapse(step)
    return sent, code


def _theirs(hbt: ModuleType, events: np.ndarray, start: int) -> Run:
    asset = (
        hbt.BacktestAsset()
        .data([events])
        .linear_asset(1.0)
        .constant_order_latency(CONFIG.entry_latency_ns, CONFIG.response_latency_ns)
        .power_prob_queue_model3(CONFIG.queue_power)
        .no_partial_fill_exchange()
        .trading_value_fee_model(CONFIG.fees.maker, CONFIG.fees.taker)
        .tick_size(CONFIG.tick)
        .lot_size(CONFIG.lot)
    )
    bt = hbt.HashMapMarketDepthBacktest([asset])
    t0 = time.perf_counter()
    sent, code = _hbt_quote(bt, start, STEP_NS, QTY)
    seconds = time.perf_counter() - t0
    if code != 1:
        raise RuntimeError(f"hftbacktest stopped with code {code} before the end of the data")
    state = bt.state_values(0)
    fills, filled = int(state.num_trades), float(state.trading_volume)
    bt.close()
    return Run(seconds, sent, fills, filled)


# --- the figures -----------------------------------------------------------------------------------


def _median(runs: list[Run]) -> Run:
    return runs[-1]._replace(seconds=statistics.median(r.seconds for r in runs))


class Row(NamedTuple):
    episode: str
    tool: str
    events: int  # book events + trades of the MarketData
    hbt_rows: int | None  # hftbacktest's event rows
    run: Run


def _total(rows: list[Row], tool: str) -> Row:
    mine = [r for r in rows if r.tool == tool]
    hbt_rows = [r.hbt_rows for r in mine if r.hbt_rows is not None]
    run = Run(*(sum(getattr(r.run, f) for r in mine) for f in Run._fields))
    return Row("both", tool, sum(r.events for r in mine), sum(hbt_rows) if hbt_rows else None, run)


def _table(rows: list[Row]) -> str:
    head = f"{'episode':<11} {'tool':<12} {'events':>8} {'hbt rows':>9} {'seconds':>8} {'events/s':>10} "
    lines = [head + f"{'orders':>7} {'fills':>6} {'filled BTC':>10}"]
    for row in rows:
        r, extra = row.run, "-" if row.hbt_rows is None else f"{row.hbt_rows:,}"
        lines.append(
            f"{row.episode:<11} {row.tool:<12} {row.events:>8,} {extra:>9} {r.seconds:>8.3f} "
            f"{row.events / r.seconds:>10,.0f} {r.orders:>7,} {r.fills:>6,} {r.filled:>10.3f}"
        )
    return "\n".join(lines)


def run() -> list[dict[str, Any]]:
    missing = [DATA / f for _, files in EPISODES for f in files if not (DATA / f).is_file()]
    if missing:
        print(f"  skipped: recording {missing[0]} not found (see {DATA / 'PROVENANCE.md'})")
        return []
    hbt = _hftbacktest()
    if hbt is None:
        print(f"  skipped: hftbacktest is not installed in {HBT_DIR} (make bench installs it)")
        return []
    rows: list[Row] = []
    for name, files in EPISODES:
        market = _episode(name, files)
        events = _hbt_events(hbt, market, CONFIG.tick)
        start = int(market.book_ts_local[0])
        warm = _slice(market, WARMUP_EVENTS)
        _ours(warm)  # compile / warm up all three
        _ours(warm, python=True)
        _theirs(hbt, _hbt_events(hbt, warm, CONFIG.tick), start)
        rows.append(Row(name, "ours", market.n_events, None, _median([_ours(market) for _ in range(REPEAT)])))
        in_python = _median([_ours(market, python=True) for _ in range(REPEAT)])
        rows.append(Row(name, "ours-python", market.n_events, None, in_python))
        hbt_run = _median([_theirs(hbt, events, start) for _ in range(REPEAT)])
        rows.append(Row(name, "hftbacktest", market.n_events, len(events), hbt_run))
    ours, python, theirs = _total(rows, "ours"), _total(rows, "ours-python"), _total(rows, "hftbacktest")
    print(f"  the same quoting rule in all, {LEVELS} levels, hftbacktest {hbt.__version__}:")
    print("  ours: compiled into the engine's loop; ours-python: from Python between run_until calls")
    print("  " + _table([*rows, ours, python, theirs]).replace("\n", "\n  "))
    ours_eps, theirs_eps = ours.events / ours.run.seconds, theirs.events / theirs.run.seconds
    note = f"{ours.events:,} events (book + trades), two Binance episodes; hftbacktest replays {theirs.hbt_rows:,} rows"
    name = "execution vs hftbacktest"
    return [
        entry(f"{name}: our engine events/s (same quoting rule, real recording)", ours_eps, "events/s", None, note),
        entry(f"{name}: hftbacktest events/s", theirs_eps, "events/s", None, f"hftbacktest {hbt.__version__}; {note}"),
        entry(f"{name}: speed ratio ours / hftbacktest", ours_eps / theirs_eps, "x", ">= 1.0"),
        entry(
            f"{name}: our engine events/s, the rule in Python",
            python.events / python.run.seconds,
            "events/s",
            None,
            f"{python.run.fills:,} fills, {python.run.orders:,} orders "
            f"(compiled: {ours.run.fills:,}, {ours.run.orders:,})",
        ),
        entry(
            f"{name}: fills ours",
            ours.run.fills,
            "fills",
            None,
            f"{ours.run.filled:.3f} BTC, {ours.run.orders:,} orders",
        ),
        entry(
            f"{name}: fills hftbacktest",
            theirs.run.fills,
            "fills",
            None,
            f"{theirs.run.filled:.3f} BTC, {theirs.run.orders:,} orders",
        ),
    ]
