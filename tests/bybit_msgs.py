"""Hand-made Bybit v5 messages for tests (same shapes as the exchange sends)."""

from __future__ import annotations

import orjson

from market.events import RawMessage

Level = tuple[float, float]


def _lv(levels: list[Level]) -> list[list[str]]:
    return [[f"{p:.1f}", f"{q:.3f}"] for p, q in levels]


def book(
    u: int,
    cts_ms: int,
    bids: list[Level],
    asks: list[Level],
    snapshot: bool = False,
    seq: int | None = None,
    symbol: str = "BTCUSDT",
    depth: int = 50,
) -> str:
    return orjson.dumps(
        {
            "topic": f"orderbook.{depth}.{symbol}",
            "type": "snapshot" if snapshot else "delta",
            "ts": cts_ms + 2,
            "data": {"s": symbol, "b": _lv(bids), "a": _lv(asks), "u": u, "seq": seq if seq is not None else u * 10},
            "cts": cts_ms,
        }
    ).decode()


def trades(ts_ms: int, prints: list[tuple[str, float, float, str]], symbol: str = "BTCUSDT") -> str:
    """prints: (side 'Buy'|'Sell', price, size, trade id)."""
    return orjson.dumps(
        {
            "topic": f"publicTrade.{symbol}",
            "type": "snapshot",
            "ts": ts_ms + 1,
            "data": [
                {
                    "T": ts_ms,
                    "s": symbol,
                    "S": s,
                    "v": f"{q:.3f}",
                    "p": f"{p:.1f}",
                    "L": "PlusTick",
                    "i": i,
                    "BT": False,
                }
                for s, p, q, i in prints
            ],
        }
    ).decode()


def raw(payload: str, ts_local_ns: int) -> RawMessage:
    return RawMessage("bybit", "", ts_local_ns, payload)


def ms(t: int) -> int:
    """A local receive time (ns) for a message at exchange time t ms."""
    return t * 1_000_000 + 3_000_000


def random_stream(
    n: int, seed: int = 0, start_ms: int = 1_767_225_600_000, step_ms: int = 20, pause_every: int = 0, pause_ms: int = 0
) -> list[RawMessage]:
    """A small random but valid Bybit stream: one snapshot, then n deltas (and some trades).

    With ``pause_every``, the stream goes silent for ``pause_ms`` after every that many deltas.
    """
    import random

    rnd = random.Random(seed)
    mid = 650_000  # in ticks
    bids = {mid - i: round(rnd.uniform(0.001, 3), 3) for i in range(1, 11)}
    asks = {mid + i: round(rnd.uniform(0.001, 3), 3) for i in range(0, 10)}
    t = start_ms
    out = [
        raw(
            book(
                1000, t, [(k / 10, v) for k, v in bids.items()], [(k / 10, v) for k, v in asks.items()], snapshot=True
            ),
            ms(t),
        )
    ]
    # the best prices kept as the book changes: min / max over the sides, which only grow, made a
    # stream of 150,000 deltas take 15 s
    best_ask, best_bid = min(asks), max(bids)
    for k in range(n):
        t += step_ms
        if pause_every and k and k % pause_every == 0:
            t += pause_ms
        db: list[Level] = []
        da: list[Level] = []
        for _ in range(rnd.randint(1, 4)):
            side_bid = rnd.random() < 0.5
            book_side, ch = (bids, db) if side_bid else (asks, da)
            tick = rnd.randint(best_ask - 12, best_bid) if side_bid else rnd.randint(best_bid + 1, best_bid + 12)
            if side_bid and tick >= best_ask:
                tick = best_ask - 1
            if not side_bid and tick <= best_bid:
                tick = best_bid + 1
            if tick in book_side and rnd.random() < 0.3 and len(book_side) > 3:
                del book_side[tick]
                ch.append((tick / 10, 0.0))
                if side_bid and tick == best_bid:
                    best_bid = max(bids)
                elif not side_bid and tick == best_ask:
                    best_ask = min(asks)
            else:
                q = round(rnd.uniform(0.001, 3), 3)
                book_side[tick] = q
                ch.append((tick / 10, q))
                if side_bid:
                    best_bid = max(best_bid, tick)
                else:
                    best_ask = min(best_ask, tick)
        out.append(raw(book(1001 + k, t, db, da), ms(t)))
        if rnd.random() < 0.2:
            side = rnd.choice(["Buy", "Sell"])
            px = (best_ask if side == "Buy" else best_bid) / 10
            out.append(raw(trades(t, [(side, px, round(rnd.uniform(0.001, 0.5), 3), f"t{seed}-{k}")]), ms(t) + 1))
    return out
