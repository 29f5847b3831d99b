"""The simulated market written in the historical archive formats a desk back-fills from.

- Bybit's order-book archive ``YYYY-MM-DD_SYMBOL_ob500.data.zip``: the WebSocket messages, one JSON
  line each (snapshot, then deltas; ``ts``, ``cts``, ``u``, ``seq``), topic ``orderbook.500``;
- Bybit's trade archive ``SYMBOLYYYY-MM-DD.csv.gz``: ``timestamp,symbol,side,size,price,
  tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional``, timestamp in seconds;
- with ``tardis``: Tardis.dev's ``incremental_book_L2`` and ``trades`` CSV (µs, with the local
  receive time the simulator stamps).

A day of them is what ``make bench`` imports against the five-minute target (bench/bench_archives.py),
and what the archive tests import and check against an independent rebuild.

    python -m sim.archives --hours 24 --out /tmp/archives [--tardis] [--config config.yaml]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from core.cli import add_config_argument, config_from, run_main
from core.config import AppConfig
from core.errors import UserError
from market.events import RawMessage
from sim import MarketSimulator

NS = 1_000_000_000
TRADES_HEADER = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional\n"
TARDIS_BOOK_HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
TARDIS_TRADES_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


@dataclass
class Written:
    """The files and what they hold."""

    files: list[Path] = field(default_factory=list)
    book_messages: int = 0
    trades: int = 0


def file_names(symbol: str, start_ns: int) -> tuple[str, str]:
    """(the order-book archive's name, the trade archive's name) of the day holding ``start_ns``."""
    day = datetime.fromtimestamp(start_ns / NS, UTC).strftime("%Y-%m-%d")
    return f"{day}_{symbol}_ob500.data.zip", f"{symbol}{day}.csv.gz"


def write_archives(
    cfg: AppConfig,
    hours: float,
    out: Path,
    tardis: bool = False,
    progress: Callable[[float], None] | None = None,
    depth: int = 500,
) -> Written:
    """``hours`` of the configured simulated market from ``sim.start``, in the archive formats, under
    ``out``; the book ``depth`` levels a side (Bybit's ob500: 500; the simulator publishes the levels
    its ``sim.model.depth_ticks`` hold, up to that)."""
    out.mkdir(parents=True, exist_ok=True)
    symbol = cfg.instrument.venue_symbol
    sim = MarketSimulator(cfg.sim, cfg.instrument, depth=depth)
    book_name, trades_name = file_names(symbol, cfg.sim.start)
    written = Written()
    duration = int(hours * 3600 * NS)
    tardis_names = (f"bybit_incremental_book_L2_{book_name[:10]}_{symbol}.csv.gz",
                    f"bybit_trades_{book_name[:10]}_{symbol}.csv.gz")  # fmt: skip
    with contextlib.ExitStack() as stack:
        zf = stack.enter_context(zipfile.ZipFile(out / book_name, "w", zipfile.ZIP_DEFLATED, compresslevel=6))
        book = stack.enter_context(zf.open(book_name.removesuffix(".zip"), "w", force_zip64=True))
        trades = stack.enter_context(gzip.open(out / trades_name, "wb", compresslevel=6))
        trades.write(TRADES_HEADER.encode())
        tb = tt = None
        if tardis:
            tb = stack.enter_context(gzip.open(out / tardis_names[0], "wb", compresslevel=6))
            tt = stack.enter_context(gzip.open(out / tardis_names[1], "wb", compresslevel=6))
            tb.write(TARDIS_BOOK_HEADER.encode())
            tt.write(TARDIS_TRADES_HEADER.encode())
        done = 0
        for batch in sim.batches(duration):
            _write(batch, symbol, book, trades, tb, tt, written)
            if progress is not None and sim.now_ns - cfg.sim.start > done + NS * 600:
                done = sim.now_ns - cfg.sim.start
                progress(min(done / duration, 1.0))
    written.files = [out / book_name, out / trades_name]
    if tardis:
        written.files += [out / name for name in tardis_names]
    return written


def _write(
    batch: list[RawMessage],
    symbol: str,
    book: IO[bytes],
    trades: gzip.GzipFile,
    tardis_book: gzip.GzipFile | None,
    tardis_trades: gzip.GzipFile | None,
    written: Written,
) -> None:
    lines, rows = io.StringIO(), io.StringIO()
    tb, tt = io.StringIO(), io.StringIO()
    for m in batch:
        if m.payload.startswith('{"topic":"orderbook.'):
            lines.write(m.payload)
            lines.write("\n")
            written.book_messages += 1
            if tardis_book is not None:
                d = orjson.loads(m.payload)
                snap = "true" if d["type"] == "snapshot" else "false"
                head = f"bybit,{symbol},{d['cts'] * 1000},{m.ts_local // 1000},{snap}"
                for side, levels in (("bid", d["data"]["b"]), ("ask", d["data"]["a"])):
                    for px, qty in levels:
                        tb.write(f"{head},{side},{px},{qty}\n")
            continue
        for t in orjson.loads(m.payload)["data"]:
            ms, px, qty = int(t["T"]), t["p"], t["v"]
            notional = float(px) * float(qty)
            rows.write(
                f"{ms // 1000}.{ms % 1000:03d},{symbol},{t['S']},{qty},{px},{t['L']},{t['i']},"
                f"{round(notional * 1e8)},{qty},{notional:.8g}\n"
            )
            if tardis_trades is not None:
                tt.write(f"bybit,{symbol},{ms * 1000},{m.ts_local // 1000},{t['i']},{t['S'].lower()},{px},{qty}\n")
            written.trades += 1
    book.write(lines.getvalue().encode())
    trades.write(rows.getvalue().encode())
    if tardis_book is not None and tardis_trades is not None:
        tardis_book.write(tb.getvalue().encode())
        tardis_trades.write(tt.getvalue().encode())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.archives", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours to write (default 24)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write them to")
    parser.add_argument("--tardis", action="store_true", help="write Tardis.dev's CSV as well")
    add_config_argument(parser)
    args = parser.parse_args(argv)
    if not 0 < args.hours <= 24 * 31:
        raise UserError(f"--hours {args.hours:g}: between 0 and 744 (a month)")
    cfg = config_from(args)
    w = write_archives(cfg, args.hours, Path(args.out), args.tardis, lambda f: print(f"  {f:6.1%}", flush=True))
    print(f"wrote {w.book_messages:,} book messages and {w.trades:,} trades: {', '.join(str(p) for p in w.files)}")
    return 0


if __name__ == "__main__":
    run_main(main)
