"""The stand-in's simulator at ``speed`` N: N times the market per wall second, every timestamp a
client sees the wall-clock time the server published it at (market time compressed onto the wall
clock), so a client's staleness and clock checks see data of "now" at any speed."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from core.config import AppConfig
from standin import BackgroundStandin
from standin.feeds import SimFeed

NS = 1_000_000_000


async def _due_times(feed: SimFeed, now_ns: int, wall_s: float) -> list[int]:
    """When the feed asks the server to publish each message of its first ``wall_s`` wall seconds."""
    out: list[int] = []
    async for due, _ in feed.messages(now_ns):
        if due >= now_ns + wall_s * NS:
            return out
        out.append(due)
    return out


def test_at_speed_n_the_feed_publishes_n_times_the_messages_per_wall_second() -> None:
    cfg = AppConfig()
    now = time.time_ns()
    base = asyncio.run(_due_times(SimFeed(cfg.sim, cfg.instrument, 50), now, 10.0))
    fast = asyncio.run(_due_times(SimFeed(cfg.sim, cfg.instrument, 50, speed=5.0), now, 2.0))
    per_s_base, per_s_fast = len(base) / 10.0, len(fast) / 2.0
    assert per_s_base > 40  # Bybit's cadence: a book delta every 20 ms, and the trades
    assert 4.0 < per_s_fast / per_s_base < 6.0, (per_s_base, per_s_fast)
    assert fast == sorted(fast) and fast[0] >= now


def test_a_history_at_speed_n_is_market_time_and_published_first() -> None:
    cfg = AppConfig()
    now = time.time_ns()
    feed = SimFeed(cfg.sim, cfg.instrument, 50, history_ns=60 * NS, catchup=10.0, speed=4.0)
    due = asyncio.run(_due_times(feed, now, 3.0))
    # 60 s of market = 15 s of wall clock, published 10 times faster: in the first 1.5 s
    past = [d for d in due if d < now + int(1.5 * NS)]
    assert len(past) > 0.8 * len(due) * 1.5 / 3.0
    assert feed.wall_ms(now // 1_000_000 - 60_000) == now // 1_000_000 - 15_000


def test_at_speed_n_every_timestamp_a_client_sees_is_the_time_it_arrives() -> None:
    """Bounds a loaded machine cannot move: a stamp is never later than the frame's arrival (nor
    earlier than the server's start: no history here), and the stamps run at the wall clock's pace
    while N times the market passes: a book delta every 20 ms of market time is N per 20 ms of
    stamp time. How late frames arrive is the machine's load, not a property of the stamps."""
    cfg = AppConfig()
    speed = 10.0
    started_ms = time.time_ns() // 1_000_000
    with BackgroundStandin(SimFeed(cfg.sim, cfg.instrument, 50, speed=speed)) as server:

        async def watch(seconds: float) -> tuple[list[int], list[int], list[int]]:
            lags: list[int] = []
            stamps: list[int] = []
            delta_ts: list[int] = []
            async with aiohttp.ClientSession() as s, s.ws_connect(server.ws_url) as ws:
                args = ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"]
                await ws.send_str(orjson.dumps({"op": "subscribe", "args": args}).decode())
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    frame = await ws.receive(timeout=30)
                    msg = orjson.loads(frame.data)
                    now_ms = time.time_ns() // 1_000_000
                    if str(msg.get("topic", "")).startswith("orderbook"):
                        if msg["type"] == "delta":
                            delta_ts.append(msg["ts"])
                        got = [msg["ts"], msg["cts"]]
                    elif "topic" in msg:
                        got = [msg["ts"], *(t["T"] for t in msg["data"])]
                    else:
                        continue
                    stamps += got
                    lags += [now_ms - t for t in got]
            return lags, stamps, delta_ts

        lags, stamps, delta_ts = asyncio.run(watch(3.0))
    assert len(lags) > 1000
    assert min(lags) >= -5, min(lags)  # never from the future (a few ms of rounding)
    assert min(stamps) >= started_ms, (min(stamps), started_ms)  # nor from before the market began
    # market time at the stamps' pace: 10 deltas per 20 ms of stamp time (market time itself would be
    # one per 20 ms), whatever share of the 3 s the server kept up with
    span_ms = delta_ts[-1] - delta_ts[0]
    assert span_ms > 0 and delta_ts == sorted(delta_ts)
    per_20ms = (len(delta_ts) - 1) / (span_ms / 20)
    assert 0.6 * speed < per_20ms < 1.5 * speed, (per_20ms, len(delta_ts), span_ms)
