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

from execution import compiled, kernel
from execution import records as r
from execution.compiled import CompiledStrategy
from execution.held_market import HeldMarket, grow
from execution.market import Market
from execution.types import FILL_DTYPE, ORDER_DTYPE, SAMPLE_DTYPE, EngineConfig, OrderKind, OrderStatus, Side
from execution.venue import BookView, OpenOrder

NS = 1_000_000_000
_ORDER_FIELDS = r.ORDER_ROW.names or ()
_OPEN = int(OrderStatus.OPEN)
FAR_PAST = -(1 << 62)


class Wake(IntFlag):
    """Why ``run_until`` stopped (NONE: it reached the time asked); pass the ones to stop on."""

    NONE = 0
    FILL = r.W_FILL  # one of our fills was delivered
    ORDER = r.W_ORDER  # any order report was delivered (acks, rejects, cancels, amends, fills)
    BOOK = r.W_BOOK  # the local best bid or ask changed
    END = r.W_END  # a loaded block of data ended (never for pushed data)


@dataclasses.dataclass(frozen=True)
class Counters:
    """Request outcomes, counted at the exchange."""

    requests: int  # requests that reached the exchange (each counts against the rate limit)
    post_only_rejects: int  # new orders and amends refused because they would take
    rate_limit_rejects: int
    too_late_cancels: int  # the order had filled (or ended) before the cancel arrived
    too_late_amends: int
    invalid: int  # off the tick / lot grid, or a request on a rejected order


class Engine:
    """Event-driven fill simulation for one instrument (REFERENCE section 2)."""

    def __init__(
        self, cfg: EngineConfig, levels: int, sample_ns: int = NS, cash: float = 0.0, position: float = 0.0
    ) -> None:
        """``cash`` and ``position`` open the account (a paper restart carries them over)."""
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.cfg, self.levels, self.sample_ns, self.initial_cash = cfg, levels, sample_ns, cash
        self._state = np.zeros(1, r.STATE_ROW)
        self._s = s = r.Row(self._state)  # the state's fields, written in place
        s.next_sample[0] = s.next_funding[0] = r.INF
        s.now[0] = s.ex_now[0] = s.last_delivery[0] = s.next_timer[0] = FAR_PAST
        self._config = np.zeros(1, r.CONFIG_ROW)
        config = dict(
            entry_ns=cfg.entry_latency_ns,
            response_ns=cfg.response_latency_ns,
            rate_limit=cfg.rate_limit,
            rate_window_ns=cfg.rate_window_ns,
            sample_ns=sample_ns,
            funding_ns=cfg.fees.funding_interval_ns,
            queue_model=int(cfg.queue_model),
            fill_rule=int(cfg.fill_rule),
            tick=cfg.tick,
            lot=cfg.lot,
            maker=cfg.fees.maker,
            taker=cfg.fees.taker,
            funding_rate=cfg.fees.funding_rate,
            queue_power=cfg.queue_power,
        )
        self._config[0] = tuple(config[name] for name in r.CONFIG_ROW.names or ())  # every field, by name
        self._accounts = np.zeros(2, r.ACCOUNT_ROW)
        self._accounts["cash"], self._accounts["position"] = cash, position
        self._local = r.Row(self._accounts, r.LOCAL)
        self._entry_ns = int(cfg.entry_latency_ns)
        self.market = HeldMarket(levels, self._state)
        self._dep = np.zeros((2, levels))
        self._orders = np.zeros(64, r.ORDER_ROW)
        self._opn = np.zeros((2, 64), np.int64)
        self._requests = np.zeros(64, r.REQUEST_ROW)
        self._reports = np.zeros(256, r.REPORT_ROW)
        self._fills = np.zeros(256, r.FILL_ROW)
        self._samples = np.zeros(256, r.SAMPLE_ROW)
        self._rl = np.full(max(cfg.rate_limit, 1), FAR_PAST, np.int64)

    # --- market input ----------------------------------------------------------------------------

    def load(self, market: Market) -> None:
        """Append a recorded block (events after everything already held); the data ends with it."""
        self.market.load(market)

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
        self.market.push_book(ts_ex, ts_local, bid_px, bid_qty, ask_px, ask_qty)

    def push_trade(self, ts_ex: int, ts_local: int, price: float, qty: float, side: int) -> None:
        """One live trade (``side``: the taker's, +1 buy / -1 sell)."""
        self.market.push_trade(ts_ex, ts_local, price, qty, side)

    # --- the clock ---------------------------------------------------------------------------------

    def run_until(self, t_local_ns: int, wake: Wake = Wake.NONE) -> Wake:
        """Advance to local time ``t_local_ns``, or stop earlier (``now`` set) on a ``wake`` condition.

        Returns the conditions that stopped it (Wake.NONE: ``now == t_local_ns``)."""
        if t_local_ns < self.now:
            raise ValueError(f"run_until({t_local_ns}) is before now ({self.now})")
        while True:
            flags = int(kernel.run(int(t_local_ns), int(wake), self.arrays()))
            if not flags & r.W_SPACE:
                return Wake(flags)
            self._make_room()

    def drive(self, strategy: CompiledStrategy, t_local_ns: int) -> Wake:
        """Run a compiled strategy inside the compiled loop to local time ``t_local_ns`` (or the end
        of the data when it wakes on Wake.END): execution.compiled. Returns what ended it."""
        if t_local_ns < self.now:
            raise ValueError(f"drive({t_local_ns}) is before now ({self.now})")
        if self._s.next_timer[0] == FAR_PAST:
            self._s.next_timer[0] = strategy.start_ns
        while True:
            e = self.arrays()
            flags = int(
                compiled.drive(int(t_local_ns), strategy.every_ns, strategy.wake, e, strategy.step, strategy.state)
            )
            if not flags & r.W_SPACE:
                return Wake(flags)
            self._make_room()
            self._room_for(2 * compiled.MAX_REQUESTS)
            self._reports = grow(self._reports, 2 * len(self._reports))

    def arrays(self) -> r.Arrays:
        """The engine's arrays by name (valid until the engine grows them: call again after each run)."""
        state = (self._state, self._config, self._accounts)
        orders = (self._orders, self._opn, self._requests, self._reports)
        return r.Arrays._make(
            (*state, *self.market.read_only, self._dep, *orders, self._fills, self._samples, self._rl)
        )

    def _make_room(self) -> None:
        s = self._s
        head, n = int(s.rep_head[0]), int(s.rep_n[0])
        self._reports[: n - head] = self._reports[head:n].copy()
        s.rep_head[0], s.rep_n[0] = 0, n - head
        need = 2 * (int(s.n_open[0].sum()) + self.levels + 2) + 2
        if n - head + need > len(self._reports):
            self._reports = grow(self._reports, n - head + need)
        if s.n_fills[0] + need > len(self._fills):
            self._fills = grow(self._fills, len(self._fills) + need)
        if s.n_samples[0] + 1 > len(self._samples):
            self._samples = grow(self._samples, 1)

    @property
    def now(self) -> int:
        """The local clock (ns)."""
        return int(self._s.now[0])

    # --- the local view ----------------------------------------------------------------------------

    def _row(self) -> int:
        return int(self._s.local_book[0]) - 1

    @property
    def best_bid(self) -> float:
        """Best bid of the last book received (NaN before the first)."""
        i = self._row()
        return float(self.market.books[2][i, 0]) if i >= 0 else math.nan

    @property
    def best_ask(self) -> float:
        """Best ask of the last book received (NaN before the first)."""
        i = self._row()
        return float(self.market.books[4][i, 0]) if i >= 0 else math.nan

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
        b = self.market.books
        return BookView(int(b[1][i]), b[2][i].copy(), b[3][i].copy(), b[4][i].copy(), b[5][i].copy())

    def position(self) -> float:
        """BTC held (short negative), as reported by ``now``."""
        return float(self._local.position[0])

    def cash(self) -> float:
        """Starting cash - cost of fills - fees - funding, as reported by ``now``."""
        return float(self._local.cash[0])

    def fees_paid(self) -> float:
        """USDT paid in maker and taker fees, as reported by ``now``."""
        return float(self._local.fees[0])

    def funding_paid(self) -> float:
        """USDT paid in funding (negative: received), as reported by ``now``."""
        return float(self._local.funding[0])

    def equity(self) -> float:
        """Cash + position * mid (the local view)."""
        pos = self.position()
        return self.cash() + (pos * self.mid if pos != 0.0 else 0.0)

    def open_orders(self) -> list[OpenOrder]:
        """Orders sent and not reported done by ``now`` (pending ones included, as last reported)."""
        n, first, o = self._n_orders, int(self._s.first_live[0]), self._orders
        status = o["local_status"]
        while first < n and status[first] > _OPEN:  # a done order never comes back
            first += 1
        self._s.first_live[0] = first  # the compiled strategies' cursor too (compiled.live_orders)
        live = [first + k for k, st in enumerate(status[first:n].tolist()) if st <= _OPEN]
        tag, side, price, qty, filled = (o[f] for f in ("tag", "side", "local_price", "local_qty", "local_filled"))
        return [
            OpenOrder(i + 1, int(tag[i]), int(side[i]), float(price[i]), float(qty[i]), float(filled[i])) for i in live
        ]

    def order_status(self, order_id: int) -> OrderStatus:
        """The order's status as last reported to us."""
        return OrderStatus(int(self._orders[self._index(order_id)]["local_status"]))

    def order_terms(self, order_id: int) -> tuple[float, float, float]:
        """(price, qty, filled) of one order as the exchange holds it (after its amends)."""
        o = self._orders[self._index(order_id)]
        return float(o["price"]), float(o["qty"]), float(o["filled"])

    # --- requests ----------------------------------------------------------------------------------

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
        self._room_for(1)
        idx = self._n_orders
        self._s.n_orders[0] = idx + 1
        market = kind == OrderKind.MARKET
        px = math.nan if market else float(price)
        pending = int(OrderStatus.PENDING)
        fields = dict(
            side=int(side), kind=int(kind), post_only=int(post_only and not market), tag=tag,
            ts_submit_local=self.now, ts_arrive_ex=-1, ts_done_ex=-1, status=pending, local_status=pending,
            price=px, qty=qty, local_price=px, local_qty=qty, queue_ahead=math.nan,
        )  # fmt: skip
        self._orders[idx] = tuple(fields.get(name, 0) for name in _ORDER_FIELDS)  # one write of the row, the rest 0
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

    @property
    def _n_orders(self) -> int:
        return int(self._s.n_orders[0])

    def _room_for(self, k: int) -> None:
        """Room for ``k`` more orders and requests."""
        n, s = self._n_orders, self._s
        if n + k > len(self._orders):
            self._orders = grow(self._orders, n + k)
            opn = np.zeros((2, len(self._orders)), np.int64)
            opn[:, : self._opn.shape[1]] = self._opn
            self._opn = opn
        head, m = int(s.req_head[0]), int(s.req_n[0])
        if m + k > len(self._requests):
            self._requests = grow(self._requests[head:m], m - head + k)
            s.req_head[0], s.req_n[0] = 0, m - head

    def _index(self, order_id: int) -> int:
        if not 1 <= order_id <= self._n_orders:
            raise ValueError(f"unknown order id {order_id}")
        return order_id - 1

    def _request(self, kind: int, oid: int, price: float, qty: float) -> None:
        self._room_for(1)
        n = int(self._s.req_n[0])
        self._requests[n] = (self.now + self._entry_ns, kind, oid, price, qty)
        self._s.req_n[0] = n + 1

    # --- results -----------------------------------------------------------------------------------

    def fills(self, start: int = 0) -> np.ndarray:
        """Every fill so far (exchange side; from the ``start``-th), as FILL_DTYPE rows in time order."""
        return self._fills[start : int(self._s.n_fills[0])].view(FILL_DTYPE).copy()

    def orders(self) -> np.ndarray:
        """Every order sent (exchange side; open ones have ts_done_ex -1), as ORDER_DTYPE rows."""
        n = self._n_orders
        rows = self._orders[:n]
        out = np.zeros(n, ORDER_DTYPE)
        out["order_id"] = np.arange(1, n + 1)
        for name in ORDER_DTYPE.names or ():
            if name != "order_id":
                out[name] = rows[name]
        return out

    def samples(self) -> np.ndarray:
        """The equity curve: one SAMPLE_DTYPE row every ``sample_ns`` of exchange time."""
        return self._samples[: int(self._s.n_samples[0])].view(SAMPLE_DTYPE).copy()

    def counters(self) -> Counters:
        """How the requests so far fared at the exchange."""
        return Counters(**{f.name: int(getattr(self._s, f.name)[0]) for f in dataclasses.fields(Counters)})

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
