"""The matching engine: one typed wrapper over the numba kernels, for backtests and paper trading.

A backtest ``load``s recorded blocks; the paper broker ``push_book`` / ``push_trade``s live
events one at a time. Both then call ``run_until(t)`` and the same kernels replay the events
(see execution.kernel for the clocks and tie-breaks, execution.queue for the queue model). What
the strategy reads (book, orders, position, cash, equity) is the *local* view at ``now``: the
last book event received by then and the reports delivered by then. The exchange-side truth is
in ``fills()``, ``orders()`` and ``samples()``.
"""

from __future__ import annotations

import dataclasses
import math
from enum import IntFlag
from typing import Any

import numpy as np

from execution import kernel
from execution import records as r
from execution.market import MarketData, empty_market
from execution.types import FILL_DTYPE, ORDER_DTYPE, EngineConfig, OrderKind, OrderStatus, Side
from execution.venue import BookView, OpenOrder

NS = 1_000_000_000
FAR_PAST = -(1 << 62)
BOOK_FIELDS = tuple(f for f in MarketData._fields if not f.startswith("trade_"))
TRADE_FIELDS = tuple(f for f in MarketData._fields if f.startswith("trade_"))
SAMPLE_DTYPE = r.SAMPLE_DTYPE  # the equity curve on the exchange clock (execution.records)


class Wake(IntFlag):
    """Why ``run_until`` stopped (NONE: it reached the time asked); pass the ones to stop on."""

    NONE = 0
    FILL = r.W_FILL  # one of our fills was delivered
    ORDER = r.W_ORDER  # any order report was delivered (acks, rejects, cancels, amends, fills)
    BOOK = r.W_BOOK  # the local best bid or ask changed
    END = r.W_END  # a loaded block of data ended (never for pushed data)


@dataclasses.dataclass(frozen=True)
class Counters:
    """Request outcomes, counted at the exchange (fields of records.STATE_DTYPE of the same name)."""

    requests: int  # requests that reached the exchange (each counts against the rate limit)
    post_only_rejects: int  # new orders and amends refused because they would take
    rate_limit_rejects: int
    too_late_cancels: int  # the order had filled (or ended) before the cancel arrived
    too_late_amends: int
    invalid: int  # off the tick / lot grid, or a request on a rejected order


def _grow(a: np.ndarray, rows: int, fill: float = 0) -> np.ndarray:
    out = np.full((max(rows, 2 * a.shape[0]), *a.shape[1:]), fill, a.dtype)
    out[: a.shape[0]] = a
    return out


def _state(cfg: EngineConfig, sample_ns: int, cash: float, position: float) -> np.ndarray:
    """The kernels' one-row state record: clocks at the far past, the configuration, the account."""
    state = np.zeros(1, r.STATE_DTYPE)
    st = state[0]
    st["next_sample"] = st["next_funding"] = r.INF
    st["now"] = st["ex_now"] = st["last_delivery"] = FAR_PAST
    st["entry_ns"], st["response_ns"] = cfg.entry_latency_ns, cfg.response_latency_ns
    st["rate_limit"], st["rate_window_ns"] = cfg.rate_limit, cfg.rate_window_ns
    st["sample_ns"], st["funding_ns"] = sample_ns, cfg.fees.funding_interval_ns
    st["queue_model"], st["fill_rule"] = int(cfg.queue_model), int(cfg.fill_rule)
    st["cash"] = st["l_cash"] = cash
    st["position"] = st["l_position"] = position
    st["tick"], st["lot"], st["power"] = cfg.tick, cfg.lot, cfg.queue_power
    st["maker"], st["taker"], st["funding_rate"] = cfg.fees.maker, cfg.fees.taker, cfg.fees.funding_rate
    return state


class Engine:
    """Event-driven fill simulation for one instrument (REFERENCE section 2)."""

    def __init__(
        self, cfg: EngineConfig, levels: int, sample_ns: int = NS, cash: float = 0.0, position: float = 0.0
    ) -> None:
        """``cash`` and ``position`` open the account (a paper restart carries them over)."""
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.cfg, self.levels, self.sample_ns, self.initial_cash = cfg, levels, sample_ns, cash
        self.arrays = r.Arrays(
            state=_state(cfg, sample_ns, cash, position),
            market=empty_market(levels),
            dep=np.zeros((2, levels)),
            rate=np.full(max(cfg.rate_limit, 1), FAR_PAST, np.int64),
            orders=np.zeros(64, r.ORDER_STATE_DTYPE),
            book=np.zeros((2, 64), np.int64),
            requests=np.zeros(64, r.REQUEST_DTYPE),
            reports=np.zeros(256, r.REPORT_DTYPE),
            fills=np.zeros(256, FILL_DTYPE),
            samples=np.zeros(256, r.SAMPLE_DTYPE),
        )

    @property
    def _st(self) -> np.void:
        st: np.void = self.arrays.state[0]  # a view: writes reach the kernels' state
        return st

    def _set(self, **arrays: Any) -> None:
        self.arrays = self.arrays._replace(**arrays)

    # --- market input ----------------------------------------------------------------------------

    def load(self, market: MarketData) -> None:
        """Append a recorded block (events after everything already held); the data ends with it."""
        m = market.validate().top(self.levels)
        self._append(m, BOOK_FIELDS, "n_book")
        self._append(m, TRADE_FIELDS, "n_trade")
        self._st["finite"] = 1

    def push_book(
        self,
        ts_ex: int,
        ts_local: int,
        bid_px: np.ndarray,
        bid_qty: np.ndarray,
        ask_px: np.ndarray,
        ask_qty: np.ndarray,
    ) -> None:
        """One live book event (top levels, best first; fewer than ``levels`` are padded as missing)."""
        bq, aq = np.asarray(bid_qty, np.float64), np.asarray(ask_qty, np.float64)
        if not ((bq >= 0).all() and (aq >= 0).all()):
            raise ValueError("book event: negative or NaN sizes")
        if len(bid_px) and len(ask_px) and bid_px[0] >= ask_px[0]:
            raise ValueError("book event: crossed")
        n = self._reserve(BOOK_FIELDS, "n_book", int(ts_ex))
        m, k = self.arrays.market, self.levels
        m.book_ts_ex[n], m.book_ts_local[n] = ts_ex, ts_local
        for dst, src, fill in (
            (m.bid_px, bid_px, math.nan),
            (m.bid_qty, bq, 0.0),
            (m.ask_px, ask_px, math.nan),
            (m.ask_qty, aq, 0.0),
        ):
            j = min(len(src), k)
            dst[n, :j] = src[:j]
            dst[n, j:] = fill
        self._st["n_book"] = n + 1
        self._st["finite"] = 0

    def push_trade(self, ts_ex: int, ts_local: int, price: float, qty: float, side: int) -> None:
        """One live trade (``side``: the taker's, +1 buy / -1 sell)."""
        if not (price > 0 and qty > 0 and side in (1, -1)):
            raise ValueError(f"trade: bad price, size or side ({price}, {qty}, {side})")
        n = self._reserve(TRADE_FIELDS, "n_trade", int(ts_ex))
        m = self.arrays.market
        m.trade_ts_ex[n], m.trade_ts_local[n], m.trade_price[n], m.trade_qty[n], m.trade_side[n] = (
            ts_ex, ts_local, price, qty, side,
        )  # fmt: skip
        self._st["n_trade"] = n + 1
        self._st["finite"] = 0

    def _reserve(self, fields: tuple[str, ...], count: str, first_ts: int, k: int = 1) -> int:
        """Room for ``k`` more book rows (or trades) after the held ones; returns the first free row.
        Rows the exchange and we are both done with are dropped (the current book rows stay)."""
        st, m = self._st, self.arrays.market
        n = int(st[count])
        times = getattr(m, fields[0])
        if n and first_ts < times[n - 1]:
            raise ValueError(
                "book events go back in exchange time" if count == "n_book" else "trades go back in exchange time"
            )
        if n + k > len(times):
            if count == "n_book":
                keep = max(min(int(st["ex_book"]), int(st["loc_book"])) - 1, 0)
                st["ex_book"] -= keep
                st["loc_book"] -= keep
            else:
                keep = int(st["ex_trade"])
                st["ex_trade"] = 0
            self._set(market=m._replace(**{f: _grow(getattr(m, f)[keep:n], n - keep + k) for f in fields}))
            st[count] = n - keep
        return int(st[count])

    def _append(self, src: MarketData, fields: tuple[str, ...], count: str) -> None:
        k = len(getattr(src, fields[0]))
        if k == 0:
            return
        n = self._reserve(fields, count, int(getattr(src, fields[0])[0]), k)
        for f in fields:
            getattr(self.arrays.market, f)[n : n + k] = getattr(src, f)
        self._st[count] = n + k

    # --- the clock ---------------------------------------------------------------------------------

    def run_until(self, t_local_ns: int, wake: Wake = Wake.NONE) -> Wake:
        """Advance to local time ``t_local_ns``, or stop earlier (``now`` set) on a ``wake`` condition.

        Returns the conditions that stopped it (Wake.NONE: ``now == t_local_ns``)."""
        if t_local_ns < self.now:
            raise ValueError(f"run_until({t_local_ns}) is before now ({self.now})")
        while True:
            flags = int(kernel.run(int(t_local_ns), int(wake), self.arrays))
            if not flags & r.W_SPACE:
                return Wake(flags)
            self._make_room()

    def _make_room(self) -> None:
        """Drop the delivered reports and grow the reports, fills and samples for the next event."""
        st, a = self._st, self.arrays
        head, n = int(st["rep_head"]), int(st["rep_n"])
        a.reports[: n - head] = a.reports[head:n].copy()
        st["rep_head"], st["rep_n"] = 0, n - head
        need = 2 * (int(st["n_open"].sum()) + self.levels + 2) + 2
        if n - head + need > len(a.reports):
            self._set(reports=_grow(a.reports, n - head + need))
        if st["n_fills"] + need > len(a.fills):
            self._set(fills=_grow(a.fills, len(a.fills) + need))
        if st["n_samples"] + 1 > len(a.samples):
            self._set(samples=_grow(a.samples, 1))

    @property
    def now(self) -> int:
        """The local clock (ns)."""
        return int(self._st["now"])

    # --- the local view ----------------------------------------------------------------------------

    def _row(self) -> int:
        return int(self._st["loc_book"]) - 1

    @property
    def best_bid(self) -> float:
        """Best bid of the last book received (NaN before the first)."""
        i = self._row()
        return float(self.arrays.market.bid_px[i, 0]) if i >= 0 else math.nan

    @property
    def best_ask(self) -> float:
        """Best ask of the last book received (NaN before the first)."""
        i = self._row()
        return float(self.arrays.market.ask_px[i, 0]) if i >= 0 else math.nan

    @property
    def mid(self) -> float:
        """(best bid + best ask) / 2 of the last book received."""
        return 0.5 * (self.best_bid + self.best_ask)

    def book(self) -> BookView:
        """The last book received by ``now`` (copies; all missing before the first one)."""
        i = self._row()
        if i < 0:
            nan, zero = np.full(self.levels, math.nan), np.zeros(self.levels)
            return BookView(-1, nan, zero, nan.copy(), zero.copy())
        m = self.arrays.market
        return BookView(
            int(m.book_ts_local[i]), m.bid_px[i].copy(), m.bid_qty[i].copy(), m.ask_px[i].copy(), m.ask_qty[i].copy()
        )

    def position(self) -> float:
        """BTC held (short negative), as reported by ``now``."""
        return float(self._st["l_position"])

    def cash(self) -> float:
        """Starting cash - cost of fills - fees - funding, as reported by ``now``."""
        return float(self._st["l_cash"])

    def fees_paid(self) -> float:
        """USDT paid in maker and taker fees, as reported by ``now``."""
        return float(self._st["l_fees"])

    def funding_paid(self) -> float:
        """USDT paid in funding (negative: received), as reported by ``now``."""
        return float(self._st["l_funding"])

    def equity(self) -> float:
        """Cash + position * mid (the local view)."""
        pos = self.position()
        return self.cash() + (pos * self.mid if pos != 0.0 else 0.0)

    def open_orders(self) -> list[OpenOrder]:
        """Orders sent and not reported done by ``now`` (pending ones included, as last reported)."""
        o = self.arrays.orders[: self._n_orders]
        live = np.flatnonzero(o["l_status"] <= int(OrderStatus.OPEN))
        return [
            OpenOrder(
                int(i + 1),
                int(o["tag"][i]),
                int(o["side"][i]),
                float(o["l_price"][i]),
                float(o["l_qty"][i]),
                float(o["l_filled"][i]),
            )
            for i in live
        ]

    def order_status(self, order_id: int) -> OrderStatus:
        """The order's status as last reported to us."""
        return OrderStatus(int(self.arrays.orders["l_status"][self._index(order_id)]))

    def order_terms(self, order_id: int) -> tuple[float, float, float]:
        """(price, qty, filled) of one order as the exchange holds it (after its amends)."""
        o = self.arrays.orders[self._index(order_id)]
        return float(o["price"]), float(o["qty"]), float(o["filled"])

    # --- requests ----------------------------------------------------------------------------------

    @property
    def _n_orders(self) -> int:
        return int(self._st["n_orders"])

    def submit(
        self,
        side: int,
        qty: float,
        price: float = math.nan,
        kind: OrderKind = OrderKind.LIMIT,
        post_only: bool = True,
        tag: int = 0,
    ) -> int:
        """Send a new order now; it reaches the exchange after the entry latency. Returns its id."""
        side, kind = Side(side), OrderKind(kind)
        idx = self._n_orders
        if idx == len(self.arrays.orders):
            book = np.zeros((2, 2 * idx), np.int64)
            book[:, :idx] = self.arrays.book
            self._set(orders=_grow(self.arrays.orders, 0), book=book)
        self._st["n_orders"] = idx + 1
        market = kind == OrderKind.MARKET
        px = math.nan if market else float(price)
        o = self.arrays.orders[idx]  # a fresh row: the array is zeros past n_orders
        o["side"], o["kind"], o["post_only"], o["tag"] = side, kind, post_only and not market, tag
        o["ts_submit"], o["ts_arrive"], o["ts_done"] = self.now, -1, -1
        o["status"] = o["l_status"] = r.PENDING
        o["price"], o["qty"], o["l_price"], o["l_qty"] = px, qty, px, qty
        o["qa0"] = math.nan
        self._request(r.REQ_NEW, idx + 1, math.nan, math.nan)
        return idx + 1

    def amend(self, order_id: int, price: float | None = None, qty: float | None = None) -> None:
        """Change price and/or size (a new price or a bigger size loses queue priority)."""
        self._index(order_id)
        if price is None and qty is None:
            raise ValueError("amend needs a price or a qty")
        self._request(
            r.REQ_AMEND, order_id, math.nan if price is None else float(price), math.nan if qty is None else float(qty)
        )

    def cancel(self, order_id: int) -> None:
        """Cancel on arrival; the order can still fill while the cancel is in flight."""
        self._index(order_id)
        self._request(r.REQ_CANCEL, order_id, math.nan, math.nan)

    def cancel_all(self) -> None:
        """Cancel every order open when the request arrives (one request)."""
        self._request(r.REQ_CANCEL_ALL, 0, math.nan, math.nan)

    def _index(self, order_id: int) -> int:
        if not 1 <= order_id <= self._n_orders:
            raise ValueError(f"unknown order id {order_id}")
        return order_id - 1

    def _request(self, kind: int, oid: int, price: float, qty: float) -> None:
        st = self._st
        head, n = int(st["req_head"]), int(st["req_n"])
        if n == len(self.arrays.requests):
            self._set(requests=_grow(self.arrays.requests[head:n], n - head + 1))
            st["req_head"], n = 0, n - head
        self.arrays.requests[n] = (self.now + st["entry_ns"], kind, oid, price, qty)
        st["req_n"] = n + 1

    # --- results -----------------------------------------------------------------------------------

    def fills(self, start: int = 0) -> np.ndarray:
        """Every fill so far (exchange side; from the ``start``-th), as FILL_DTYPE rows in time order."""
        return self.arrays.fills[start : int(self._st["n_fills"])].copy()

    def orders(self) -> np.ndarray:
        """Every order sent (exchange side; open ones have ts_done_ex -1), as ORDER_DTYPE rows."""
        n = self._n_orders
        o = self.arrays.orders[:n]
        out = np.zeros(n, ORDER_DTYPE)
        out["order_id"] = np.arange(1, n + 1)
        for name in ("tag", "side", "kind", "status", "post_only", "reject", "amends", "price", "qty", "filled"):
            out[name] = o[name]
        out["ts_submit_local"], out["ts_arrive_ex"], out["ts_done_ex"] = o["ts_submit"], o["ts_arrive"], o["ts_done"]
        return out

    def samples(self) -> np.ndarray:
        """The equity curve: one SAMPLE_DTYPE row every ``sample_ns`` of exchange time."""
        return self.arrays.samples[: int(self._st["n_samples"])].copy()

    def counters(self) -> Counters:
        """How the requests so far fared at the exchange."""
        st = self._st
        return Counters(**{f.name: int(st[f.name]) for f in dataclasses.fields(Counters)})

    def describe(self) -> dict[str, Any]:
        """The configuration that shaped the fills, for the run's metadata (REFERENCE 2, point 11)."""
        cfg = dataclasses.asdict(self.cfg)
        cfg["queue_model"] = self.cfg.queue_model.name
        cfg["fill_rule"] = self.cfg.fill_rule.name
        return {
            **cfg,
            "levels": self.levels,
            "sample_ns": self.sample_ns,
            "initial_cash": self.initial_cash,
            "latency": "constant entry and response latency; feed latency from the data (ts_local - ts_ex)",
            "tie_break": "exchange before local; trades, then book events, then requests, then boundaries",
            "impact": "not modelled beyond the visible book: the unfilled rest of a market order expires",
            "randomness": "none: the queue model moves expected volumes",
        }
