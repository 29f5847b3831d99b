"""Our trading in the sessions and range the page chose: the price with our orders and fills, the
order history, the fills, the round trips and the execution figures, each with its sample size
and, for a mean or a share, its 95 % interval (stats.py).

Execution figures here are over the fills of the choice (the runner's own rolling figures, over
its last ``live.slippage_window`` fills, drive its slippage alert and stay on the slippage chart):

- arrival slippage and markouts: the mean per fill (as ``arrival_slippage_mean_bps`` and
  ``markout_10s_bps`` of a backtest report), over the fills the journal has a mid for;
- maker fills: the share of fills that rested on the book;
- orders filled: the share of the orders that ended (post-only rejects aside) with a fill;
- post-only rejects: rejects over post-only requests (new limit orders and amends); the count
  is the runner's (an amend it refuses leaves no record of its own).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.timefmt import format_ns
from live.dashboard.journal_view import JournalState
from live.dashboard.market_view import Fill
from live.dashboard.orders import Order
from live.dashboard.selection import Selection
from live.dashboard.stats import MIN_EVIDENCE, mean_interval, proportion

CHART_POINTS = 2000  # mid points drawn
CHART_ORDERS = 400  # the newest orders drawn on the price chart
CHART_FILLS = 2000
ROWS = 200  # rows of each table
_LIQ = {True: "maker", False: "taker"}
_SIDE = {1: "buy", -1: "sell"}


def iso(ts: list[int]) -> list[str]:
    """Many times at once, as ``format_ns`` writes one (ISO 8601 UTC, milliseconds): the charts' x."""
    return [f"{t}Z" for t in np.asarray(ts, np.int64).astype("datetime64[ns]").astype("datetime64[ms]").astype(str)]


def _stride(items: list[Any], keep: int) -> list[Any]:
    step = -(-len(items) // keep) if len(items) > keep else 1
    return items[::step] if step > 1 else items


def _fills(st: JournalState, sel: Selection) -> list[Fill]:
    return [f for f in st.market.fills if sel.has(f.ts, f.session)]


def _orders(st: JournalState, sel: Selection) -> list[Order]:
    """Orders of the chosen sessions alive at some time of the range."""
    t0, t1 = sel.t0, sel.t1
    return [
        o
        for o in st.orders.orders.values()
        if sel.has_session(o.session)
        and (t1 is None or o.ts <= t1)
        and (t0 is None or o.ended is None or o.ended >= t0)
    ]


def price_chart(st: JournalState, sel: Selection, orders: list[Order], fills: list[Fill]) -> dict[str, Any]:
    pts = _stride([p for p in st.market.prices if sel.has(p.ts, p.session)], CHART_POINTS)
    book = any(math.isfinite(p.bid) for p in pts)
    end = sel.t1 if sel.t1 is not None else (pts[-1].ts if pts else None)
    out: dict[str, Any] = {
        "source": "book" if book else "account" if pts else "none",
        "t": iso([p.ts for p in pts]),
        "mid": [p.mid for p in pts],
        "bid": [p.bid for p in pts] if book else [],
        "ask": [p.ask for p in pts] if book else [],
        "orders_drawn": min(len(orders), CHART_ORDERS),
        "orders_total": len(orders),
    }
    refused = [o for o in orders[-CHART_ORDERS:] if o.post_only_reject and math.isfinite(o.first_price)]
    out["rejected"] = {
        "t": iso([o.ts for o in refused]),
        "price": [o.first_price for o in refused],
        "text": [f"#{o.id} {_SIDE[o.side]} {o.qty:.3f} @ {o.first_price:,.1f} refused: post-only" for o in refused],
    }
    for side, name in ((1, "buy"), (-1, "sell")):
        t: list[int | None] = []
        y: list[float | None] = []
        for o in orders[-CHART_ORDERS:]:
            if o.side != side or not math.isfinite(o.first_price) or o.post_only_reject:
                continue
            stop = o.ended if o.ended is not None else max(end or o.ts, o.ts)
            price = o.first_price
            path = [(o.ts, price)]
            for ts, what, p in o.events:
                if what == "amend" and math.isfinite(p) and p != price:
                    path += [(ts, price), (ts, p)]
                    price = p
            path.append((stop, price))
            t += [ts for ts, _ in path] + [None]
            y += [p for _, p in path] + [None]
        times = iso([v for v in t if v is not None])[::-1]
        out[f"orders_{name}"] = {"t": [None if v is None else times.pop() for v in t], "price": y}
        fs = [f for f in fills[-CHART_FILLS:] if f.side == side]
        out[f"fills_{name}"] = {
            "t": iso([f.ts for f in fs]),
            "price": [f.price for f in fs],
            "qty": [f.qty for f in fs],
            "text": [f"#{f.order_id} {name} {f.qty:.3f} @ {f.price:,.1f} {_LIQ[f.maker]}" for f in fs],
        }
    return out


def order_rows(orders: list[Order]) -> dict[str, Any]:
    rows = [{**o.as_row(), "ts": format_ns(o.ts), "ended": format_ns(o.ended) if o.ended else None}
            for o in reversed(orders[-ROWS:])]  # fmt: skip
    return {
        "rows": rows,
        "total": len(orders),
        "open": sum(1 for o in orders if o.ended is None),
        "post_only_rejects": sum(1 for o in orders if o.post_only_reject),
    }


def fill_rows(fills: list[Fill], horizons: list[str]) -> dict[str, Any]:
    rows = [
        {"ts": format_ns(f.ts), "id": f.order_id, "side": f.side, "price": f.price, "qty": f.qty, "fee": f.fee,
         "maker": f.maker, "slippage_bps": f.slippage_bps,
         **{f"markout_{h}_bps": m for h, m in zip(horizons, f.markouts_bps, strict=True)}}
        for f in reversed(fills[-ROWS:])
    ]  # fmt: skip
    return {"rows": rows, "total": len(fills), "horizons": horizons}


def round_trips(st: JournalState, sel: Selection, funding: float) -> dict[str, Any]:
    trips = st.trips
    done = [rt for rt in trips.closed if rt.closed is not None and sel.has(rt.closed, rt.session)]
    mark = st.market.last
    mid = mark.mid if mark is not None else math.nan
    cur = trips.current
    rows = [{**rt.as_dict(), "state": "closed"} for rt in reversed(done[-ROWS:])]
    if cur is not None and sel.has_session(cur.session):
        rows.insert(0, {**cur.as_dict(), "state": "open", "unrealized": trips.unrealized(mid)})
    for r in rows:
        r["opened"] = format_ns(r["opened"])
        r["closed"] = format_ns(r["closed"]) if r["closed"] else None
    return {
        "rows": rows,
        "total": len(done),
        "won": sum(1 for rt in done if rt.net > 0),
        "net": sum(rt.net for rt in done),
        "fees": sum(rt.fees for rt in done),
        # the whole account, not the choice: what the equity card is made of
        "realized": trips.realized(funding),
        "unrealized": trips.unrealized(mid),
        "mark": mid,
        "mark_ts": format_ns(mark.ts) if mark is not None else None,
        "position": trips.position(),
    }


def execution(st: JournalState, sel: Selection, orders: list[Order], fills: list[Fill]) -> dict[str, Any]:
    horizons = [f"{h / 1e9:g}s" for h in st.market.horizons_ns]
    t0 = sel.t0 if sel.t0 is not None else -1
    ended = [o for o in orders if o.ended is not None and o.ended >= t0 and not o.post_only_reject]
    requests = sum(1 for o in orders if o.kind == "LIMIT" and o.ts >= t0)
    requests += sum(1 for o in orders for ts, what, _ in o.events if what == "amend" and ts >= t0)
    rejects = min(_rejects(st, sel), requests)
    return {
        "min_n": MIN_EVIDENCE,
        "fills": len(fills),
        "horizons": horizons,
        "slippage": mean_interval(f.slippage_bps for f in fills).as_dict(),
        "markouts": {h: mean_interval(f.markouts_bps[k] for f in fills).as_dict() for k, h in enumerate(horizons)},
        "maker": proportion(sum(1 for f in fills if f.maker), len(fills)).as_dict(),
        "orders_filled": proportion(sum(1 for o in ended if o.filled > 0), len(ended)).as_dict(),
        "rejects": {**proportion(rejects, requests).as_dict(), "count": rejects},
    }


def _rejects(st: JournalState, sel: Selection) -> int:
    """Post-only rejects in the choice, from the runner's running count per session."""
    before: dict[int, int] = {}
    last: dict[int, int] = {}
    for ts, session, count in st.rejects:
        if not sel.has_session(session) or (sel.t1 is not None and ts > sel.t1):
            continue
        if sel.t0 is not None and ts < sel.t0:
            before[session] = count
        else:
            last[session] = count
    return sum(c - before.get(s, 0) for s, c in last.items())


def trading(st: JournalState, sel: Selection, funding: float) -> dict[str, Any]:
    """The trading parts of the page's snapshot for the choice ``sel``."""
    orders, fills = _orders(st, sel), _fills(st, sel)
    ex = execution(st, sel, orders, fills)
    return {
        "prices": price_chart(st, sel, orders, fills),
        "order_history": order_rows(orders),
        "fill_history": fill_rows(fills, ex["horizons"]),
        "round_trips": round_trips(st, sel, funding),
        "execution_stats": ex,
    }
