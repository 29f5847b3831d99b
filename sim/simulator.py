"""MarketSimulator: Bybit-shaped messages from the queue-reactive kernel, chunk by chunk."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import numpy as np

from core.config import InstrumentConfig, SimConfig
from market.events import RawMessage
from market.venues.bybit import VENUE, book_topic, trade_topic
from sim import kernel
from sim import writer as w
from sim.state import PARAM_DTYPE, STATE_DTYPE, Book, Out

CHUNK_NS = 10_000_000_000  # simulated time per kernel call; also the unit of re-seeding
WINDOW_TICKS = 1 << 14
FIRST_UPDATE_ID = 1_000_000


def _decimals(step: float) -> tuple[int, int]:
    """(multiplier, decimals) such that step == multiplier * 10**-decimals."""
    for dec in range(10):
        mult = step * 10**dec
        if abs(mult - round(mult)) < 1e-9 * max(1.0, mult):
            return round(mult), dec
    raise ValueError(f"step {step} has more than 9 decimals")


class MarketSimulator:
    """A seeded, reproducible BTC-perpetual market emitting Bybit v5 public messages.

    ``batches()`` yields lists of :class:`RawMessage` in arrival order: an ``orderbook.{depth}``
    snapshot, then a delta every ``cadence`` whenever the top ``depth`` levels changed, and a
    ``publicTrade`` message per market order. The same seed and start give the same messages.
    """

    def __init__(
        self, sim: SimConfig, instrument: InstrumentConfig, depth: int = 50, window_ticks: int = WINDOW_TICKS
    ) -> None:
        self.cfg = sim
        self.depth = depth
        self.venue_symbol = instrument.venue_symbol
        m = sim.model
        px_mult, px_dec = _decimals(instrument.tick_size)
        _, qty_dec = _decimals(instrument.lot_size)
        if round(instrument.lot_size * 10**qty_dec) != 1:
            raise ValueError(f"lot size {instrument.lot_size} must be a power of ten")
        if window_ticks < 8 * sim.model.depth_ticks:
            raise ValueError(f"window_ticks must be at least 8 x depth_ticks ({8 * sim.model.depth_ticks})")
        if sim.cadence <= 0:
            raise ValueError("sim.cadence must be positive")
        self.params = _params(sim, depth, (px_mult, px_dec, qty_dec))

        tag = hashlib.sha256(f"{sim.seed}:{sim.start}".encode()).hexdigest()[:10]
        self._pieces, self._offsets = _pieces(depth, instrument.venue_symbol, f"sim-{tag}-")
        self._seed_base = int.from_bytes(hashlib.sha256(f"seed:{sim.seed}".encode()).digest()[:4], "little")

        # the book: dense arrays of lots per tick; the mid starts in the middle of the window
        self.book = Book(
            np.zeros(1, STATE_DTYPE),
            np.zeros(window_ticks, np.int64),
            np.zeros(window_ticks, np.int64),
            np.zeros((4, depth), np.int64),
            np.zeros((4, depth), np.int64),
        )
        start_tick = round(m.base_price / instrument.tick_size)
        base = start_tick - window_ticks // 2
        first = -(-sim.start // sim.cadence) * sim.cadence  # the first publish, on the cadence grid
        st = self.book.state[0]
        st["t_ns"], st["next_publish"], st["base_tick"] = first, first, base
        st["best_bid"], st["best_ask"] = start_tick, start_tick + 1
        st["update_id"] = FIRST_UPDATE_ID - 1
        st["snapshot_due"] = 1
        self._init_book(start_tick, base)
        self._queue: list[RawMessage] = []
        self._next = 0
        self._emitted_ns = sim.start
        self._chunk_end = first
        self._buf = np.zeros(8 << 20, np.uint8)
        self._cap_msgs = 1 << 16

    def _init_book(self, start_tick: int, base: int) -> None:
        m = self.cfg.model
        rng = np.random.default_rng(self._seed_base)
        lots = 10 ** int(self.params[0]["qty_dec"])
        d = m.depth_ticks
        for side, best, step in ((self.book.bids, start_tick, -1), (self.book.asks, start_tick + 1, 1)):
            ticks = best + step * np.arange(1, d + 1) - base
            occupied = rng.random(d) < m.depth_occupancy
            sizes = np.maximum(
                1, (m.depth_size_btc * lots * np.exp(m.depth_size_sigma * rng.standard_normal(d))).astype(np.int64)
            )
            side[ticks] = np.where(occupied, sizes, 0)
            side[best - base] = max(
                1, int(m.best_queue_btc * lots * math.exp(m.best_queue_sigma * rng.standard_normal()))
            )

    @property
    def progress_ns(self) -> int:
        """Simulated time delivered so far, from the start."""
        return self._emitted_ns - self.cfg.start

    @property
    def now_ns(self) -> int:
        return int(self.book.state[0]["t_ns"])

    def best(self) -> tuple[float, float]:
        """Current best bid and ask prices."""
        p, st = self.params[0], self.book.state[0]
        tick = float(p["px_mult"]) * 10.0 ** -p["px_dec"]
        return st["best_bid"] * tick, st["best_ask"] * tick

    def metaorders(self) -> tuple[np.ndarray, np.ndarray]:
        """The hidden metaorders (end time in ns, 0 for a free slot; sign +1 buy / -1 sell), copies."""
        st = self.book.state[0]
        return st["meta_end"].copy(), st["meta_sign"].copy()

    def batches(self, duration_ns: int, max_batch: int = 20_000) -> Iterator[list[RawMessage]]:
        """Messages for the next ``duration_ns`` of simulated time, at most ``max_batch`` per list.

        The kernel always runs whole chunks (and is seeded per chunk), so the messages do not
        depend on how the time is asked for: one call of an hour equals sixty calls of a minute.
        """
        end = self._emitted_ns + duration_ns
        latency = self.cfg.feed_latency
        batch: list[RawMessage] = []
        while self._emitted_ns < end:
            if self._next >= len(self._queue):
                self._queue = self._run((self.now_ns // CHUNK_NS + 1) * CHUNK_NS)
                self._next = 0
                self._chunk_end = self.now_ns
            queue = self._queue
            i = self._next
            while i < len(queue) and queue[i].ts_local - latency <= end:
                batch.append(queue[i])
                i += 1
                if len(batch) >= max_batch:
                    self._next = i
                    yield batch
                    batch = []
            self._next = i
            self._emitted_ns = end if i < len(queue) else min(end, self._chunk_end)
        if batch:
            yield batch

    def _run(self, end_ns: int) -> list[RawMessage]:
        saved = self.book.copy()
        seed = (self._seed_base + 1_000_003 * (self.now_ns // CHUNK_NS)) % (2**32)  # a function of the chunk
        while True:
            written = Out(
                self._buf,
                np.zeros(self._cap_msgs, np.int64),
                np.zeros(self._cap_msgs, np.int64),
                np.zeros(self._cap_msgs, np.int8),
                self._pieces,
                self._offsets,
            )
            n = kernel.run_chunk(seed, end_ns, self.book, self.params, written)
            if n >= 0:
                break
            # out of room: restore the state and run the same chunk again with bigger buffers
            self.book.restore(saved)
            self._buf = np.zeros(self._buf.size * 2, np.uint8)
            self._cap_msgs *= 2
        msg_end, msg_ts = written.end, written.ts
        text = self._buf[: msg_end[n - 1] if n else 0].tobytes().decode("ascii")
        out: list[RawMessage] = []
        start = 0
        ends = msg_end[:n].tolist()
        for end, ts in zip(ends, msg_ts[:n].tolist(), strict=True):
            out.append(RawMessage(VENUE, "", ts, text[start:end]))
            start = end
        return out


def _params(sim: SimConfig, depth: int, decimals: tuple[int, int, int]) -> np.ndarray:
    """The kernel's PARAM_DTYPE row from the configuration; decimals: (px_mult, px_dec, qty_dec)."""
    m = sim.model
    px_mult, px_dec, qty_dec = decimals
    params = np.zeros(1, PARAM_DTYPE)
    p = params[0]
    p["q"], p["q_sigma"] = m.best_queue_btc, m.best_queue_sigma
    p["limit"], p["refill"] = m.limit_rate, m.refill_boost
    p["cancel"], p["cancel_imb"] = m.cancel_rate, m.cancel_imbalance
    p["order_med"], p["order_sigma"] = m.order_size_btc, m.order_size_sigma
    p["market"], p["market_imb"] = m.market_rate, m.market_imbalance
    p["trade_med"], p["trade_sigma"], p["trade_max"] = m.trade_size_btc, m.trade_size_sigma, m.trade_size_max_btc
    p["depth_ticks"], p["depth_occ"] = m.depth_ticks, m.depth_occupancy
    p["depth_med"], p["depth_sigma"], p["depth_rate"] = m.depth_size_btc, m.depth_size_sigma, m.depth_rate
    p["pullback"], p["reform_ns"], p["away_scale"] = m.pullback_ticks, m.reform_delay, m.away_queue_scale
    p["regime_vol"], p["regime_hl_ns"] = m.regime_vol, max(m.regime_half_life, 1)
    p["meta_rate"], p["meta_tilt"] = m.meta_rate / 60.0, m.meta_tilt
    p["meta_dur_ns"], p["meta_tail"] = m.meta_duration, m.meta_duration_tail
    p["meta_max_ns"] = max(m.meta_duration_max, m.meta_duration)
    p["cadence_ns"], p["latency_ns"], p["depth"] = sim.cadence, sim.feed_latency, depth
    p["px_mult"], p["px_dec"], p["qty_dec"], p["lots_per_btc"] = px_mult, px_dec, qty_dec, 10.0**qty_dec
    return params


def _pieces(depth: int, symbol: str, trade_id_prefix: str) -> tuple[np.ndarray, np.ndarray]:
    texts = [""] * 23
    texts[w.S_BOOK_SNAP] = f'{{"topic":"{book_topic(depth, symbol)}","type":"snapshot","ts":'
    texts[w.S_BOOK_DELTA] = f'{{"topic":"{book_topic(depth, symbol)}","type":"delta","ts":'
    texts[w.S_DATA_S] = f',"data":{{"s":"{symbol}","b":['
    texts[w.S_ASKS] = '],"a":['
    texts[w.S_U] = '],"u":'
    texts[w.S_SEQ] = ',"seq":'
    texts[w.S_CTS] = '},"cts":'
    texts[w.S_TRADE_HEAD] = f'{{"topic":"{trade_topic(symbol)}","type":"snapshot","ts":'
    texts[w.S_TRADE_DATA] = ',"data":['
    texts[w.S_T] = '{"T":'
    texts[w.S_SYM_SIDE] = f',"s":"{symbol}","S":"'
    texts[w.S_TRADE_ID] = trade_id_prefix
    texts[w.S_BUY] = "Buy"
    texts[w.S_SELL] = "Sell"
    texts[w.S_V] = '","v":"'
    texts[w.S_P] = '","p":"'
    texts[w.S_L] = '","L":"'
    texts[w.S_PLUS] = "PlusTick"
    texts[w.S_MINUS] = "MinusTick"
    texts[w.S_ZPLUS] = "ZeroPlusTick"
    texts[w.S_ZMINUS] = "ZeroMinusTick"
    texts[w.S_I] = '","i":"'
    texts[w.S_BT_END] = '","BT":false}'
    raw = [t.encode("ascii") for t in texts]
    offsets = np.zeros(len(raw) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in raw])
    return np.frombuffer(b"".join(raw), np.uint8).copy(), offsets
