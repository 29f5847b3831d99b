"""Our matching engine side by side with hftbacktest: replay speed and fills on a real recording.

Both tools replay the same Market, the two Binance USD-M BTCUSDT episodes of ../shared/data
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

The modules: bench/hbt_episodes.py (the episodes, and their conversion to hftbacktest's events),
bench/quoting.py (the quoting rule, in Python and compiled), bench/hbt_runners.py (the two runners);
this one runs them and prints the table.

Timing: wall time of the replay loop alone (loading, the event conversion and the backtester's
construction excluded), after a warm-up run on a slice that compiles both sides; the median of
five runs. Each tool drives its strategy from compiled code: ours as a compiled step the engine's
loop calls every 100 ms (execution.compiled, ``Engine.drive``), hftbacktest's from a numba function
around ``elapse``; the row ``ours-python`` runs the same rule from Python between ``run_until``
calls (what a research strategy pays). Events are the Market's book events + trades, for all;
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

import statistics
from typing import Any, NamedTuple

from bench import hbt_runners as runners
from bench.common import entry
from bench.hbt_episodes import DATA, EPISODES, LEVELS, episode, first_events, hbt_events
from bench.hbt_runners import CONFIG, HBT_DIR, Run

REPEAT = 5
WARMUP_EVENTS = 5000


def _median(runs: list[Run]) -> Run:
    return runs[-1]._replace(seconds=statistics.median(r.seconds for r in runs))


class Row(NamedTuple):
    episode: str
    tool: str
    events: int  # book events + trades of the Market
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
    hbt = runners.hftbacktest()
    if hbt is None:
        print(f"  skipped: hftbacktest is not installed in {HBT_DIR} (make bench installs it)")
        return []
    rows: list[Row] = []
    for name, files in EPISODES:
        market = episode(name, files)
        events = hbt_events(hbt, market, CONFIG.tick)
        start = int(market.books.ts_local[0])
        warm = first_events(market, WARMUP_EVENTS)
        runners.ours(warm)  # compile / warm up all three
        runners.ours(warm, python=True)
        runners.theirs(hbt, hbt_events(hbt, warm, CONFIG.tick), start)
        rows.append(Row(name, "ours", market.n_events, None, _median([runners.ours(market) for _ in range(REPEAT)])))
        in_python = _median([runners.ours(market, python=True) for _ in range(REPEAT)])
        rows.append(Row(name, "ours-python", market.n_events, None, in_python))
        hbt_run = _median([runners.theirs(hbt, events, start) for _ in range(REPEAT)])
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
