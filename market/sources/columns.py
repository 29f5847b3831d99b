"""Column files: the CSV archives of Bybit's trades and of Tardis.dev, decoded a block at a time.

Formats, told apart by their header line:

- Bybit's trade archives (``SYMBOL2024-01-01.csv.gz``): ``timestamp,symbol,side,size,price,
  tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional[,RPI]``. ``timestamp`` is in
  seconds with a fractional part and is kept exact to the nanosecond (read as a decimal, never as
  a float, never rounded to the millisecond); ``side`` is the taker's. No local receive time.
- Tardis.dev ``incremental_book_L2``: ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,
  price,amount`` (times in microseconds). One update is the run of rows sharing (timestamp,
  local_timestamp, is_snapshot); a snapshot's rows are the whole book (after updates: the book is
  reset to it); amount 0 deletes a level. Tardis has no update ids: a file chain's updates are
  numbered in order, so a rejected update breaks the chain and the book waits for the next snapshot.
- Tardis.dev ``trades``: ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``.

pyarrow parses a block of whole lines into typed columns (no Python object per row); a block with a
line it cannot convert is read again line by line, so that exactly the bad lines are rejected, each
with its reason and line number. A row of another symbol or exchange, an unknown side, a value that
does not convert: rejected, never stored, never patched (a Tardis update with such a row is rejected
whole). The raw lines are kept as raw messages of stream ``csv:<format>``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import DataError
from market.events import RawBatch
from market.parsing import BookMessages, Decoded, Parsed, Rejection, TradeMessages, check_levels
from market.venues import BINANCE_USDM, BYBIT, Venue

US = 1_000
NS_PER_S = 10**9


@dataclass(frozen=True)
class CsvFormat:
    kind: str  # bybit-trades | tardis-book | tardis-trades
    header: tuple[str, ...]  # the columns a header starts with
    local_time: bool  # rows carry a local receive time
    book: bool  # rows are book levels (else trades)

    @property
    def stream(self) -> str:
        return f"csv:{self.kind}"


BYBIT_TRADES = CsvFormat(
    "bybit-trades", ("timestamp", "symbol", "side", "size", "price", "tickDirection", "trdMatchID"), False, False
)
TARDIS_BOOK = CsvFormat(
    "tardis-book",
    ("exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount"),
    True,
    True,
)
TARDIS_TRADES = CsvFormat(
    "tardis-trades",
    ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"),
    True,
    False,
)
FORMATS = (BYBIT_TRADES, TARDIS_BOOK, TARDIS_TRADES)
TARDIS_EXCHANGES: dict[str, Venue] = {"bybit": BYBIT, "binance-futures": BINANCE_USDM}

# the typed columns each format is read into (before the checks), by the fast and the slow path alike
_TYPES: dict[str, dict[str, pa.DataType]] = {
    "bybit-trades": {
        "timestamp": pa.decimal128(21, 9),
        "symbol": pa.string(),
        "side": pa.string(),
        "size": pa.float64(),
        "price": pa.float64(),
        "trdMatchID": pa.string(),
    },
    "tardis-book": {
        "exchange": pa.string(),
        "symbol": pa.string(),
        "timestamp": pa.int64(),
        "local_timestamp": pa.int64(),
        "is_snapshot": pa.bool_(),
        "side": pa.string(),
        "price": pa.float64(),
        "amount": pa.float64(),
    },
    "tardis-trades": {
        "exchange": pa.string(),
        "symbol": pa.string(),
        "timestamp": pa.int64(),
        "local_timestamp": pa.int64(),
        "id": pa.string(),
        "side": pa.string(),
        "price": pa.float64(),
        "amount": pa.float64(),
    },
}


@dataclass(frozen=True)
class Sniffed:
    format: CsvFormat
    columns: tuple[str, ...]  # the file's header
    venue: Venue


def sniff(path: Path, header: str, first_row: str) -> Sniffed | None:
    """The CSV format of a file whose first line is ``header`` (None: not a known CSV archive);
    ``first_row``: its first data line (a Tardis file names its exchange there)."""
    columns = tuple(c.strip() for c in header.split(","))
    fmt = next((f for f in FORMATS if columns[: len(f.header)] == f.header), None)
    if fmt is None:
        return None
    if fmt is BYBIT_TRADES:
        return Sniffed(fmt, columns, BYBIT)
    exchange = first_row.split(",", 1)[0].strip()
    venue = TARDIS_EXCHANGES.get(exchange)
    if venue is None:
        known = ", ".join(sorted(TARDIS_EXCHANGES))
        raise DataError(f"{path}: Tardis exchange {exchange!r} is not imported here (known: {known})")
    return Sniffed(fmt, columns, venue)


def _lines(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of every line of ``data`` (whole lines, each ending in a newline), without the
    newline and a carriage return before it."""
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    stops = ends.astype(np.int64)
    cr = (stops > starts) & (buf[np.maximum(stops - 1, 0)] == 13)
    return starts, stops - cr


@dataclass
class _Rows:
    """A block's rows as typed columns, ``line``: the raw line each came from."""

    table: pa.Table
    line: np.ndarray
    rejections: list[Rejection] = field(default_factory=list)


@dataclass
class CsvDecoder:
    """Decodes one chain of files of one format (a Tardis book's update numbering and the update a
    block may end inside carry over from block to block)."""

    sniffed: Sniffed
    symbol: str
    tick: float
    next_id: int = 1  # the next Tardis update's number
    key: int = 0  # the merge key so far (exchange time, never decreasing)
    held: bytes = b""  # a Tardis book block's last update: the next block may continue it
    held_line: int = 0  # the number of its first line

    @property
    def format(self) -> CsvFormat:
        return self.sniffed.format

    def block(self, path: Path, first_line: int, data: bytes) -> Decoded | None:
        """The messages of a block of whole lines (``first_line``: the number of its first line;
        line 1 is the header). A Tardis book's last update is held back for the next block."""
        if first_line == 1:
            cut = data.find(b"\n") + 1
            header = data[:cut].decode("utf-8").strip()
            if tuple(c.strip() for c in header.split(",")) != self.sniffed.columns:
                raise DataError(f"{path}:1: the header differs from the chain's first file ({header[:120]!r})")
            data, first_line = data[cut:], 2
        if self.held:
            data, first_line = self.held + data, self.held_line
        if self.format.book:
            cut = _last_update_start(data)
            self.held, self.held_line = data[cut:], first_line + data.count(b"\n", 0, cut)
            data = data[:cut]
        return self._decode(path, first_line, data) if data else None

    def flush(self, path: Path) -> Decoded | None:
        """The end of a file: the update held back is complete."""
        data, self.held = self.held, b""
        return self._decode(path, self.held_line, data) if data else None

    def _decode(self, path: Path, first_line: int, data: bytes) -> Decoded:
        starts, stops = _lines(data)
        lines = [data[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
        rows = self._read(path, first_line, lines)
        if self.format.book:
            parsed, at, ts_ex, ts_local = self._book(path, first_line, rows, lines)
        else:
            parsed, at, ts_ex, ts_local = self._trades(path, first_line, rows, len(lines))
        keys = np.full(len(lines), -1, np.int64)
        keys[at] = ts_ex
        keys = running_max(self.key, keys)  # rejected lines (-1): the key before
        self.key = int(keys[-1]) if keys.size else self.key
        local = np.full(len(lines), -1, np.int64)  # each line: the local time of its message (its update's)
        local[at] = ts_local
        filled = np.maximum.accumulate(np.where(local >= 0, np.arange(len(lines)), 0)) if lines else local
        local = np.where(local[filled] >= 0, local[filled], keys)
        texts = [x.decode("utf-8", "surrogatepass") for x in lines]
        return Decoded(RawBatch.from_texts(self.sniffed.venue.name, texts, local), parsed, keys)

    # -- reading -----------------------------------------------------------------------------------

    def _read(self, path: Path, first_line: int, lines: list[bytes]) -> _Rows:
        """Typed columns of the non-empty lines: pyarrow at once, or line by line when a line is bad."""
        types = _TYPES[self.format.kind]
        names = list(self.sniffed.columns)
        keep = [i for i, x in enumerate(lines) if x.strip()]
        body = b"\n".join(lines[i] for i in keep)
        try:
            table = pacsv.read_csv(
                io.BytesIO(body),
                read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    include_columns=list(types),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            if table.num_rows == len(keep) and all(table[c].null_count == 0 for c in types):
                return _Rows(table, np.asarray(keep, np.int64))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        return self._read_slowly(path, first_line, lines, keep)

    def _read_slowly(self, path: Path, first_line: int, lines: list[bytes], keep: list[int]) -> _Rows:
        types = _TYPES[self.format.kind]
        where = [self.sniffed.columns.index(c) for c in types]
        cols: dict[str, list[object]] = {c: [] for c in types}
        good: list[int] = []
        rejections: list[Rejection] = []
        for i in keep:
            try:
                fields = next(csv.reader([lines[i].decode("utf-8")]))
            except (UnicodeDecodeError, csv.Error, StopIteration):
                fields = []
            if len(fields) != len(self.sniffed.columns):
                what = f"{len(fields)} fields of {len(self.sniffed.columns)}"
                rejections.append(Rejection(i, "missing_field", f"{path}:{first_line + i}: {what}"))
                continue
            try:
                values = [_convert(fields[k], t) for k, t in zip(where, types.values(), strict=True)]
            except ValueError as exc:
                rejections.append(Rejection(i, "bad_value", f"{path}:{first_line + i}: {exc}"))
                continue
            good.append(i)
            for c, v in zip(types, values, strict=True):
                cols[c].append(v)
        table = pa.table({c: pa.array(v, t) for (c, t), v in zip(types.items(), cols.values(), strict=True)})
        return _Rows(table, np.asarray(good, np.int64), rejections)

    # -- checks and messages ------------------------------------------------------------------------

    def _checked(self, path: Path, first_line: int, rows: _Rows, sides: tuple[str, str], size: str) -> np.ndarray:
        """A mask of the rows that pass the checks every format shares (exchange, symbol, side, a
        finite positive price, a finite size that is not negative); the others rejected with their reason."""
        t = rows.table
        qty, price = t[size].to_numpy(), t["price"].to_numpy()
        checks: list[tuple[str, str, np.ndarray]] = []
        if "exchange" in t.column_names:
            exchange = next(k for k, v in TARDIS_EXCHANGES.items() if v is self.sniffed.venue)
            checks.append(("wrong_symbol", "exchange", ~_eq(t["exchange"], exchange)))
        checks += [
            ("wrong_symbol", "symbol", ~_eq(t["symbol"], self.symbol)),
            ("bad_value", "side", ~(_eq(t["side"], sides[0]) | _eq(t["side"], sides[1]))),
            ("bad_value", "price", ~(np.isfinite(price) & (price > 0))),
            ("bad_value", size, ~np.isfinite(qty)),
            ("negative_size", size, np.signbit(qty)),  # "-0" too: a signed size is malformed
        ]
        ok = np.ones(t.num_rows, np.bool_)
        for reason, column, bad in checks:
            for r in np.flatnonzero(bad & ok).tolist():
                line = int(rows.line[r])
                detail = f"{path}:{first_line + line}: {column} {t[column][r].as_py()!r}"
                rows.rejections.append(Rejection(line, reason, detail))
            ok &= ~bad
        return ok

    def _trades(
        self, path: Path, first_line: int, rows: _Rows, n_lines: int
    ) -> tuple[Parsed, np.ndarray, np.ndarray, np.ndarray]:
        """(the trades, the line of each, exchange and local time of each)."""
        t = rows.table
        bybit = self.format is BYBIT_TRADES
        sides, size = (("Buy", "Sell"), "size") if bybit else (("buy", "sell"), "amount")
        ok = self._checked(path, first_line, rows, sides, size)
        qty = t[size].to_numpy()
        for r in np.flatnonzero(ok & (qty == 0)).tolist():  # a trade of nothing
            line = int(rows.line[r])
            rows.rejections.append(Rejection(line, "bad_value", f"{path}:{first_line + line}: {size} 0"))
        keep = np.flatnonzero(ok & (qty != 0))
        if bybit:
            ns = pc.cast(pc.multiply(t["timestamp"], pa.scalar(NS_PER_S, pa.decimal128(10, 0))), pa.int64())
            ts_ex = ns.to_numpy()[keep]
            ts_local = ts_ex  # the archive has no local receive time
        else:
            ts_ex = t["timestamp"].to_numpy()[keep] * US
            ts_local = t["local_timestamp"].to_numpy()[keep] * US
        trades = TradeMessages(
            index=rows.line[keep],
            ts_ex=ts_ex,
            ts_local=ts_local,
            trade_id=t["trdMatchID" if bybit else "id"].take(pa.array(keep)).to_pylist(),
            price=t["price"].to_numpy()[keep],
            qty=qty[keep],
            side=np.where(_eq(t["side"], sides[0]), 1, -1).astype(np.int8)[keep],
        )
        parsed = Parsed(self._streams(n_lines, rows), _no_book(), trades, rows.rejections)
        return parsed, trades.index, ts_ex, ts_local

    def _book(
        self, path: Path, first_line: int, rows: _Rows, lines: list[bytes]
    ) -> tuple[Parsed, np.ndarray, np.ndarray, np.ndarray]:
        """(the updates, the first line of each, exchange and local time of each). An update with
        a rejected row, or beside a line that did not read, is rejected whole (its ``skip``)."""
        unread = [r.index for r in rows.rejections]  # lines the reading rejected
        t = rows.table
        ok = self._checked(path, first_line, rows, ("bid", "ask"), "amount")
        ts, local = t["timestamp"].to_numpy(), t["local_timestamp"].to_numpy()
        snap = t["is_snapshot"].to_numpy(zero_copy_only=False).astype(np.bool_)
        n = t.num_rows
        new = np.ones(n, np.bool_)
        new[1:] = (ts[1:] != ts[:-1]) | (local[1:] != local[:-1]) | (snap[1:] != snap[:-1])
        group = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        m = starts.size
        skip = np.zeros(m, np.bool_)
        skip[group[~ok]] = True
        for line in unread:  # the update a line that did not read belongs to (its key fields tell)
            after = int(np.searchsorted(rows.line, line))
            near = [r for r in (after - 1, after) if 0 <= r < n]
            same = [r for r in near if _update_key(lines[int(rows.line[r])]) == _update_key(lines[line])]
            for r in same or near:  # a line that names no neighbour's update: both are suspect
                skip[group[r]] = True
        ids = np.arange(self.next_id, self.next_id + m, dtype=np.int64)
        self.next_id += m
        is_snap = snap[starts]
        is_bid = _eq(t["side"], "bid")
        price, amount = t["price"].to_numpy(), t["amount"].to_numpy()
        bid_off, ask_off = np.zeros(m + 1, np.int64), np.zeros(m + 1, np.int64)
        np.cumsum(np.bincount(group[is_bid], minlength=m), out=bid_off[1:])
        np.cumsum(np.bincount(group[~is_bid], minlength=m), out=ask_off[1:])
        book = BookMessages(
            index=rows.line[starts],
            ts_ex=ts[starts] * US,
            ts_local=local[starts] * US,
            first_id=ids,
            last_id=ids.copy(),
            prev_id=np.where(is_snap, -1, ids - 1),
            seq=np.full(m, -1, np.int64),
            is_snap=is_snap,
            skip=skip,
            bid_off=bid_off,
            bid_px=np.ascontiguousarray(price[is_bid]),
            bid_qty=np.ascontiguousarray(amount[is_bid]),
            ask_off=ask_off,
            ask_px=np.ascontiguousarray(price[~is_bid]),
            ask_qty=np.ascontiguousarray(amount[~is_bid]),
        )
        bids, asks = (bid_off, book.bid_px, book.bid_qty), (ask_off, book.ask_px, book.ask_qty)
        check_levels(book.index, skip, bids, asks, self.tick, rows.rejections)  # off the tick grid
        parsed = Parsed(self._streams(len(lines), rows), book, _no_trades(), rows.rejections)
        return parsed, book.index, book.ts_ex, book.ts_local

    def _streams(self, n_lines: int, rows: _Rows) -> list[str]:
        streams = [self.format.stream] * n_lines
        for r in rows.rejections:
            streams[r.index] = ""
        return streams


def running_max(start: int, ts: np.ndarray) -> np.ndarray:
    """Merge keys that never decrease: the running maximum of ``ts`` after ``start`` (the key so far)."""
    out: np.ndarray = np.maximum.accumulate(np.concatenate([[start], np.asarray(ts, np.int64)]))[1:]
    return out


def _update_key(line: bytes) -> bytes:
    """The (exchange, symbol, timestamp, local_timestamp, is_snapshot) fields of a Tardis book row:
    the rows of one update share them."""
    cut = -1
    for _ in range(5):
        cut = line.find(b",", cut + 1)
        if cut < 0:
            return line
    return line[:cut]


def _last_update_start(data: bytes) -> int:
    """Where the last update of a block of whole Tardis book lines begins (scanning back from the end)."""
    end = len(data) - 1  # the last line's newline
    if end < 0:
        return 0
    start = data.rfind(b"\n", 0, end) + 1
    key = _update_key(data[start:end].rstrip(b"\r"))
    while start > 0:
        before = data.rfind(b"\n", 0, start - 1) + 1
        if _update_key(data[before : start - 1].rstrip(b"\r")) != key:
            break
        start = before
    return start


def _convert(text: str, t: pa.DataType) -> object:
    """A field as the typed column holds it (ValueError naming the field when it does not convert)."""
    if pa.types.is_decimal(t):
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"timestamp {text!r} is not a number") from None
        if not d.is_finite() or int(d.as_tuple().exponent) < -t.scale:
            raise ValueError(f"timestamp {text!r} is not a time to the nanosecond")
        return d
    if pa.types.is_integer(t):
        if not text.strip().lstrip("-").isdigit():
            raise ValueError(f"{text!r} is not an integer")
        return int(text)
    if pa.types.is_floating(t):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if pa.types.is_boolean(t):
        if text.strip() not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text.strip() == "true"
    return text


def _eq(column: pa.ChunkedArray | pa.Array, value: str) -> np.ndarray:
    return np.asarray(pc.equal(column, value).to_numpy(zero_copy_only=False), np.bool_)


def _no_book() -> BookMessages:
    z, f = np.zeros(0, np.int64), np.zeros(0)
    return BookMessages(z, z, z, z, z, z, z, np.zeros(0, np.bool_), np.zeros(0, np.bool_), np.zeros(1, np.int64), f, f,
                        np.zeros(1, np.int64), f, f)  # fmt: skip


def _no_trades() -> TradeMessages:
    z = np.zeros(0, np.int64)
    return TradeMessages(z, z, z, [], np.zeros(0), np.zeros(0), np.zeros(0, np.int8))
