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
from execution.types import FILL_DTYPE, ORDER_DTYPE, EngineConfig, OrderKind, OrderStatus, Side
from execution.venue import BookView, OpenOrder

NS = 1_000_000_000
FAR_PAST = -(1 << 62)

# The equity curve on the exchange clock: cash is net of fees and funding, equity = cash + position * mid.
SAMPLE_DTYPE = np.dtype(
    [("ts", np.int64), ("mid", np.float64), ("position", np.float64), ("cash", np.float64), ("equity", np.float64)]
)


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
        si = np.zeros(r.N_SI, np.int64)
        si[r.S_NEXT_SAMPLE] = si[r.S_NEXT_FUNDING] = r.INF
        si[r.S_NOW] = si[r.S_EX_NOW] = si[r.S_LAST_DELIVERY] = si[r.S_NEXT_TIMER] = FAR_PAST
        si[r.K_ENTRY], si[r.K_RESPONSE] = cfg.entry_latency_ns, cfg.response_latency_ns
        si[r.K_RATE_LIMIT], si[r.K_RATE_WINDOW] = cfg.rate_limit, cfg.rate_window_ns
        si[r.K_SAMPLE], si[r.K_FUNDING] = sample_ns, cfg.fees.funding_interval_ns
        si[r.K_QUEUE_MODEL] = int(cfg.queue_model)
        si[r.K_FILL_RULE] = int(cfg.fill_rule)
        sf = np.zeros(r.N_SF)
        sf[r.P_CASH] = sf[r.L_CASH] = cash
        sf[r.P_POS] = sf[r.L_POS] = position
        sf[r.K_TICK], sf[r.K_LOT], sf[r.K_POWER] = cfg.tick, cfg.lot, cfg.queue_power
        sf[r.K_MAKER], sf[r.K_TAKER], sf[r.K_FUNDING_RATE] = cfg.fees.maker, cfg.fees.taker, cfg.fees.funding_rate
        self._si, self._sf = si, sf
        self.market = HeldMarket(levels, si)
        self._dep = np.zeros((2, levels))
        self._oi, self._of = np.zeros((64, r.N_OI), np.int64), np.zeros((64, r.N_OF))
        self._opn = np.zeros((2, 64), np.int64)
        self._qi, self._qf = np.zeros((64, 3), np.int64), np.zeros((64, 2))
        self._ri, self._rf = np.zeros((256, 5), np.int64), np.zeros((256, 3))
        self._fi, self._ff = np.zeros((256, 6), np.int64), np.zeros((256, 4))
        self._smi, self._smf = np.zeros(256, np.int64), np.zeros((256, 4))
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
        if self._si[r.S_NEXT_TIMER] == FAR_PAST:
            self._si[r.S_NEXT_TIMER] = strategy.start_ns
        while True:
            e = self.arrays()
            flags = int(
                compiled.drive(int(t_local_ns), strategy.every_ns, strategy.wake, e, strategy.step, strategy.state)
            )
            if not flags & r.W_SPACE:
                return Wake(flags)
            self._make_room()
            self._room_for(2 * compiled.MAX_REQUESTS)
            self._ri, self._rf = grow(self._ri, 2 * len(self._ri)), grow(self._rf, 2 * len(self._rf))

    def arrays(self) -> r.Arrays:
        """The engine's arrays by name (valid until the engine grows them: call again after each run)."""
        orders = (self._oi, self._of, self._opn, self._qi, self._qf, self._ri, self._rf)
        results = (self._fi, self._ff, self._smi, self._smf, self._rl)
        m = self.market
        return r.Arrays._make((self._si, self._sf, *m.read_only, self._dep, *orders, *results))

    def _make_room(self) -> None:
        si = self._si
        head, n = int(si[r.S_REP_HEAD]), int(si[r.S_REP_N])
        self._ri[: n - head], self._rf[: n - head] = self._ri[head:n].copy(), self._rf[head:n].copy()
        si[r.S_REP_HEAD], si[r.S_REP_N] = 0, n - head
        need = 2 * (int(si[r.S_N_OPEN] + si[r.S_N_OPEN + 1]) + self.levels + 2) + 2
        if n - head + need > len(self._ri):
            self._ri, self._rf = grow(self._ri, n - head + need), grow(self._rf, n - head + need)
        if si[r.S_N_FILLS] + need > len(self._fi):
            self._fi, self._ff = grow(self._fi, len(self._fi) + need), grow(self._ff, len(self._ff) + need)
        if si[r.S_N_SAMPLES] + 1 > len(self._smi):
            self._smi, self._smf = grow(self._smi, 1), grow(self._smf, 1)

    @property
    def now(self) -> int:
        """The local clock (ns)."""
        return int(self._si[r.S_NOW])

    # --- the local view ----------------------------------------------------------------------------

    def _row(self) -> int:
        return int(self._si[r.S_LOC_BOOK]) - 1

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
        return float(self._sf[r.L_POS])

    def cash(self) -> float:
        """Starting cash - cost of fills - fees - funding, as reported by ``now``."""
        return float(self._sf[r.L_CASH])

    def fees_paid(self) -> float:
        """USDT paid in maker and taker fees, as reported by ``now``."""
        return float(self._sf[r.L_FEES])

    def funding_paid(self) -> float:
        """USDT paid in funding (negative: received), as reported by ``now``."""
        return float(self._sf[r.L_FUNDING])

    def equity(self) -> float:
        """Cash + position * mid (the local view)."""
        pos = self.position()
        return self.cash() + (pos * self.mid if pos != 0.0 else 0.0)

    def open_orders(self) -> list[OpenOrder]:
        """Orders sent and not reported done by ``now`` (pending ones included, as last reported)."""
        oi, of = self._oi[: self._n_orders], self._of[: self._n_orders]
        live = np.flatnonzero(oi[:, r.O_L_STATUS] <= int(OrderStatus.OPEN))
        return [
            OpenOrder(
                int(i + 1),
                int(oi[i, r.O_TAG]),
                int(oi[i, r.O_SIDE]),
                float(of[i, r.F_L_PRICE]),
                float(of[i, r.F_L_QTY]),
                float(of[i, r.F_L_FILLED]),
            )
            for i in live
        ]

    def order_status(self, order_id: int) -> OrderStatus:
        """The order's status as last reported to us."""
        return OrderStatus(int(self._oi[self._index(order_id), r.O_L_STATUS]))

    def order_terms(self, order_id: int) -> tuple[float, float, float]:
        """(price, qty, filled) of one order as the exchange holds it (after its amends)."""
        i = self._index(order_id)
        return float(self._of[i, r.F_PRICE]), float(self._of[i, r.F_QTY]), float(self._of[i, r.F_FILLED])

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
        self._si[r.S_N_ORDERS] = idx + 1
        market = kind == OrderKind.MARKET
        oi, of = self._oi[idx], self._of[idx]
        oi[:] = 0
        oi[r.O_SIDE], oi[r.O_KIND], oi[r.O_POST], oi[r.O_TAG] = side, kind, post_only and not market, tag
        oi[r.O_TS_SUBMIT], oi[r.O_TS_ARRIVE], oi[r.O_TS_DONE] = self.now, -1, -1
        oi[r.O_STATUS] = oi[r.O_L_STATUS] = OrderStatus.PENDING
        px = math.nan if market else float(price)
        of[:] = 0.0
        of[r.F_PRICE], of[r.F_QTY], of[r.F_L_PRICE], of[r.F_L_QTY] = px, qty, px, qty
        of[r.F_QA0] = math.nan
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
        return int(self._si[r.S_N_ORDERS])

    def _room_for(self, k: int) -> None:
        """Room for ``k`` more orders and requests."""
        n, si = self._n_orders, self._si
        if n + k > len(self._oi):
            self._oi, self._of = grow(self._oi, n + k), grow(self._of, n + k)
            opn = np.zeros((2, len(self._oi)), np.int64)
            opn[:, : self._opn.shape[1]] = self._opn
            self._opn = opn
        head, m = int(si[r.S_REQ_HEAD]), int(si[r.S_REQ_N])
        if m + k > len(self._qi):
            self._qi, self._qf = grow(self._qi[head:m], m - head + k), grow(self._qf[head:m], m - head + k)
            si[r.S_REQ_HEAD], si[r.S_REQ_N] = 0, m - head

    def _index(self, order_id: int) -> int:
        if not 1 <= order_id <= self._n_orders:
            raise ValueError(f"unknown order id {order_id}")
        return order_id - 1

    def _request(self, kind: int, oid: int, price: float, qty: float) -> None:
        si = self._si
        self._room_for(1)
        n = int(si[r.S_REQ_N])
        self._qi[n] = (self.now + si[r.K_ENTRY], kind, oid)
        self._qf[n] = (price, qty)
        si[r.S_REQ_N] = n + 1

    # --- results -----------------------------------------------------------------------------------

    def fills(self, start: int = 0) -> np.ndarray:
        """Every fill so far (exchange side; from the ``start``-th), as FILL_DTYPE rows in time order."""
        n = int(self._si[r.S_N_FILLS])
        fi, ff = self._fi[start:n], self._ff[start:n]
        out = np.zeros(max(n - start, 0), FILL_DTYPE)
        out["ts_ex"], out["ts_local"], out["order_id"], out["tag"] = fi[:, 0], fi[:, 1], fi[:, 2], fi[:, 3]
        out["side"], out["maker"] = fi[:, r.FI_SIDE], fi[:, r.FI_MAKER].astype(bool)
        out["price"], out["qty"], out["fee"], out["queue_ahead"] = ff[:, 0], ff[:, 1], ff[:, 2], ff[:, 3]
        return out

    def orders(self) -> np.ndarray:
        """Every order sent (exchange side; open ones have ts_done_ex -1), as ORDER_DTYPE rows."""
        n = self._n_orders
        oi, of = self._oi[:n], self._of[:n]
        out = np.zeros(n, ORDER_DTYPE)
        out["order_id"] = np.arange(1, n + 1)
        for name, col in (("tag", r.O_TAG), ("side", r.O_SIDE), ("kind", r.O_KIND), ("status", r.O_STATUS)):
            out[name] = oi[:, col]
        out["post_only"] = oi[:, r.O_POST].astype(bool)
        out["reject"], out["amends"] = oi[:, r.O_REJECT], oi[:, r.O_AMENDS]
        out["ts_submit_local"], out["ts_arrive_ex"], out["ts_done_ex"] = (
            oi[:, r.O_TS_SUBMIT],
            oi[:, r.O_TS_ARRIVE],
            oi[:, r.O_TS_DONE],
        )
        out["price"], out["qty"], out["filled"] = of[:, r.F_PRICE], of[:, r.F_QTY], of[:, r.F_FILLED]
        return out

    def samples(self) -> np.ndarray:
        """The equity curve: one SAMPLE_DTYPE row every ``sample_ns`` of exchange time."""
        n = int(self._si[r.S_N_SAMPLES])
        out = np.zeros(n, SAMPLE_DTYPE)
        out["ts"] = self._smi[:n]
        for j, name in enumerate(("mid", "position", "cash", "equity")):
            out[name] = self._smf[:n, j]
        return out

    def counters(self) -> Counters:
        """How the requests so far fared at the exchange."""
        si = self._si
        return Counters(
            requests=int(si[r.C_REQUESTS]),
            post_only_rejects=int(si[r.C_POST_ONLY]),
            rate_limit_rejects=int(si[r.C_RATE_LIMIT]),
            too_late_cancels=int(si[r.C_LATE_CANCEL]),
            too_late_amends=int(si[r.C_LATE_AMEND]),
            invalid=int(si[r.C_INVALID]),
        )

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
