"""The Bybit v5 stand-in server: ``python -m standin [--port P] [--feed sim|file --path F]``.

    python -m standin --port 8765                    # the simulator, live, forever
    python -m standin --port 0                       # any free port (printed)
    python -m standin --feed file --path day.jsonl.gz --speed 10
    python -m standin --speed 20                     # the simulator's market 20 times faster

At ``--speed`` N every timestamp a client sees is the wall-clock time of publication (the market's
time compressed onto the wall clock), so clients' clock and staleness checks hold at any speed.

Point the ingest at it with config.yaml:

    bybit:
      rest_url: http://127.0.0.1:8765
      ws_public_url: ws://127.0.0.1:8765/v5/public/linear

Private endpoints (orders, position, executions, wallet) accept the key pair given by --api-key /
--api-secret (default standin-key / standin-secret), signed like Bybit v5.

Inject a fault: curl -X POST localhost:8765/_standin/fault -d '{"kind": "skip_update"}'
(kinds: skip_update, snapshot, restart, bad_json, missing_field, negative_size, crossed, drop,
stall, reject_orders, rate_limit, drop_response, drop_request, server_error, fill_after; the last
four also take "on": an endpoint and "count"; docs/standin.md). Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence

from core.cli import add_config_argument, run_main, setup_logging
from core.config import load_config
from core.errors import UnavailableError, UserError
from standin.feeds import Feed, FileFeed, SimFeed
from standin.private import PrivateSpec
from standin.server import StandinServer


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m standin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", help="address to bind (default: standin.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: standin.port; 0 picks a free one)")
    p.add_argument("--feed", choices=("sim", "file"), help="what to publish (default: standin.feed)")
    p.add_argument("--path", help="a recorded Bybit file (--feed file)")
    p.add_argument(
        "--speed", type=float, help="the market N times faster than the wall clock (default: standin.speed, 1)"
    )
    p.add_argument("--api-key", default="standin-key", help="the API key the private endpoints accept")
    p.add_argument("--api-secret", default="standin-secret", help="its secret (HMAC-SHA256 signatures)")
    p.add_argument("--rate-limit", type=int, default=10, help="order requests per second per key (default 10)")
    add_config_argument(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def build_private(args: argparse.Namespace) -> PrivateSpec:
    if args.rate_limit < 1:
        raise UserError(f"--rate-limit {args.rate_limit}: must be at least 1")
    if not args.api_key or not args.api_secret:
        raise UserError("--api-key and --api-secret must not be empty")
    instrument = load_config(args.config).instrument
    return PrivateSpec(args.api_key, args.api_secret, args.rate_limit, instrument.maker_fee, instrument.taker_fee)


def build_feed(args: argparse.Namespace) -> tuple[Feed, str, int]:
    cfg = load_config(args.config)
    st = cfg.standin
    kind = args.feed or st.feed
    host = args.host or st.host
    port = st.port if args.port is None else args.port
    speed = st.speed if args.speed is None else args.speed
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: must be 0..65535")
    if not speed > 0:
        raise UserError(f"--speed {speed}: must be > 0")
    if kind == "sim":
        if args.path:
            raise UserError("--path only applies to --feed file")
        return SimFeed(cfg.sim, cfg.instrument, cfg.ingest.depth, speed=speed), host, port
    path = args.path or (str(cfg.resolve(st.path)) if st.path else None)
    if not path:
        raise UserError("--feed file needs --path (or standin.path in the config)")
    return FileFeed(path, speed, cfg.instrument.venue_symbol), host, port


async def serve(feed: Feed, host: str, port: int, private: PrivateSpec | None = None) -> None:
    server = StandinServer(feed, host, port, private)
    try:
        await server.start()
    except OSError as exc:
        raise UnavailableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"stand-in Bybit v5 listening on {server.url} (WebSocket {server.ws_url}, feed {feed.name})", flush=True)
    try:
        waiter = asyncio.create_task(stop.wait())
        pump = server.publisher
        done, _ = await asyncio.wait({waiter, *([pump] if pump else [])}, return_when=asyncio.FIRST_COMPLETED)
        if pump is not None and pump in done and not waiter.done():
            pump.result()  # a failing feed surfaces its error
            print("the feed ended", flush=True)
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    feed, host, port = build_feed(args)
    asyncio.run(serve(feed, host, port, build_private(args)))
    return 0


if __name__ == "__main__":
    run_main(main)
