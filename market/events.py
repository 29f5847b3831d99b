"""The normalized event records, defined once for DuckDB, Arrow and numpy.

Every normalized book or trade record carries two int64 ns clocks: ``ts_exchange_ns`` (the
matching engine's time: Bybit ``cts`` / trade ``T``, Binance ``T``) and ``ts_local_ns`` (when the
message reached us), plus the venue's update id. The warehouse builds its DDL from these specs,
the normalizer builds its Arrow batches from them, and readers get numpy arrays of these dtypes.

Tables
------
raw_messages   every market-data message as received, lossless (normalization can be re-run)
book_updates   one row per applied book message: a snapshot or a delta, levels as lists
trades         one row per public trade (taker side +1 buy / -1 sell)
snapshots      the top N levels after every applied book update (N from config)
snapshots_1s   the last snapshot of every 1 s bucket (t - 1s, t]: an index for sampled reads
sync_events    sequence gaps, resets, resyncs, reconnects and rejected messages
ingest_runs    one row per ingest run: source, arguments, counts
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import pyarrow as pa

Kind = Literal["scalar", "list", "array"]

_SQL_TO_ARROW: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "TINYINT": pa.int8(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
}
_SQL_TO_NUMPY: dict[str, np.dtype] = {
    "VARCHAR": np.dtype(object),
    "BIGINT": np.dtype(np.int64),
    "INTEGER": np.dtype(np.int32),
    "TINYINT": np.dtype(np.int8),
    "DOUBLE": np.dtype(np.float64),
    "BOOLEAN": np.dtype(np.bool_),
}


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # element type for list/array columns
    doc: str
    kind: Kind = "scalar"
    size: int = 0  # fixed length of an array column
    nullable: bool = False  # NULL means "unknown" (e.g. a label whose horizon runs past the data)

    @property
    def ddl_type(self) -> str:
        if self.kind == "list":
            return f"{self.sql}[]"
        if self.kind == "array":
            return f"{self.sql}[{self.size}]"
        return self.sql

    @property
    def arrow_type(self) -> pa.DataType:
        element = _SQL_TO_ARROW[self.sql]
        if self.kind == "list":
            return pa.list_(element)
        if self.kind == "array":
            return pa.list_(element, self.size)
        return element

    @property
    def numpy_dtype(self) -> np.dtype:
        return _SQL_TO_NUMPY[self.sql]


@dataclass(frozen=True)
class TableSpec:
    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # natural key: re-ingesting the same data never duplicates it
    time_column: str  # rows arrive in (roughly) this order; dedup scans are pruned on it
    order: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def ddl(self) -> str:
        cols = ",\n  ".join(f"{c.name} {c.ddl_type}{'' if c.nullable else ' NOT NULL'}" for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}\n)"

    def empty(self) -> pa.Table:
        return self.arrow_schema.empty_table()


_VENUE = Column("venue", "VARCHAR", "venue id: bybit, binance-usdm")
_SYMBOL = Column("symbol", "VARCHAR", "the venue's symbol, e.g. BTCUSDT")
_TS_EX = Column("ts_exchange_ns", "BIGINT", "matching-engine time, ns since the epoch")
_TS_LOCAL = Column("ts_local_ns", "BIGINT", "local receive time, ns since the epoch")

RAW_MESSAGES = TableSpec(
    name="raw_messages",
    doc="Market-data messages exactly as received (text), for re-running normalization.",
    columns=(
        _VENUE,
        Column("stream", "VARCHAR", "topic or stream name, e.g. orderbook.50.BTCUSDT, btcusdt@depth@0ms"),
        _TS_LOCAL,
        Column("payload", "VARCHAR", "the message text as received"),
    ),
    key=("venue", "stream", "ts_local_ns", "payload"),
    time_column="ts_local_ns",
)

BOOK_UPDATES = TableSpec(
    name="book_updates",
    doc="Applied order-book messages in sequence: a snapshot, then contiguous deltas (size 0 deletes).",
    columns=(
        _VENUE,
        _SYMBOL,
        _TS_EX,
        _TS_LOCAL,
        Column("update_id", "BIGINT", "last update id in the message (Bybit u, Binance u)"),
        Column("first_update_id", "BIGINT", "first update id (Binance U; Bybit u)"),
        Column(
            "prev_update_id",
            "BIGINT",
            "update id this message follows (Binance pu; Bybit u-1); -1 for snapshots",
        ),
        Column("seq", "BIGINT", "cross-stream sequence (Bybit seq); -1 when the venue has none"),
        Column("is_snapshot", "BOOLEAN", "true: the levels replace the book; false: they update it"),
        Column("epoch_ns", "BIGINT", "ts_exchange_ns of the snapshot that started this book epoch"),
        Column("bid_px", "DOUBLE", "bid prices in the message", "list"),
        Column("bid_qty", "DOUBLE", "bid sizes in the message (0 deletes the level)", "list"),
        Column("ask_px", "DOUBLE", "ask prices in the message", "list"),
        Column("ask_qty", "DOUBLE", "ask sizes in the message (0 deletes the level)", "list"),
    ),
    key=("venue", "symbol", "ts_exchange_ns", "update_id", "is_snapshot"),
    time_column="ts_exchange_ns",
)

TRADES = TableSpec(
    name="trades",
    doc="Public trades from the trade stream (never inferred from the book).",
    columns=(
        _VENUE,
        _SYMBOL,
        _TS_EX,
        _TS_LOCAL,
        Column("trade_id", "VARCHAR", "the venue's trade id"),
        Column("price", "DOUBLE", "trade price"),
        Column("qty", "DOUBLE", "trade size in base currency (BTC)"),
        Column("side", "TINYINT", "taker side: +1 buy, -1 sell"),
    ),
    key=("venue", "symbol", "trade_id"),
    time_column="ts_exchange_ns",
)

SYNC_EVENTS = TableSpec(
    name="sync_events",
    doc="Book integrity events: gaps, resets, resyncs, reconnects, rejected messages.",
    columns=(
        _VENUE,
        _SYMBOL,
        _TS_EX,
        _TS_LOCAL,
        Column("kind", "VARCHAR", "gap | snapshot | restart | resync | reconnect | reject"),
        Column("update_id", "BIGINT", "update id involved, -1 if none"),
        Column("detail", "VARCHAR", "one line for a person"),
    ),
    key=("venue", "symbol", "kind", "ts_local_ns", "update_id", "detail"),  # two rejects of one instant are two
    time_column="ts_local_ns",
)

INGEST_RUNS = TableSpec(
    name="ingest_runs",
    doc="One row per ingest run.",
    columns=(
        Column("run_id", "VARCHAR", "unique id of the run"),
        Column("source", "VARCHAR", "bybit | sim | file"),
        Column("detail", "VARCHAR", "paths, duration, endpoint"),
        Column("started_ns", "BIGINT", "wall-clock start"),
        Column("ended_ns", "BIGINT", "wall-clock end"),
        Column("status", "VARCHAR", "completed | stopped | failed"),
        Column("messages", "BIGINT", "messages received"),
        Column("book_updates", "BIGINT", "book updates applied"),
        Column("trades", "BIGINT", "trades received"),
        Column("rejected", "BIGINT", "messages rejected"),
        Column("gaps", "BIGINT", "sequence gaps"),
    ),
    key=("run_id",),
    time_column="started_ns",
)


def snapshot_spec(levels: int, name: str = "snapshots") -> TableSpec:
    """The top-``levels`` book after each update; missing levels have price NaN and size 0."""
    extra: tuple[Column, ...] = ()
    doc = f"Top {levels} levels of the book after every applied update."
    key: tuple[str, ...] = ("venue", "symbol", "ts_exchange_ns", "update_id")
    if name == "snapshots_1s":
        extra = (Column("bucket_ns", "BIGINT", "end of the 1 s bucket (t - 1s, t] holding this snapshot"),)
        doc = "The last snapshot of each 1 s bucket (t - 1s, t]; the as-of book at whole seconds."
        key = ("venue", "symbol", "bucket_ns")
    elif name == "snapshots_latest":
        doc = "The most recent snapshot of each (venue, symbol): the current book in one row."
        key = ("venue", "symbol")
    return TableSpec(
        name=name,
        doc=doc,
        columns=(
            _VENUE,
            _SYMBOL,
            *extra,
            _TS_EX,
            _TS_LOCAL,
            Column("update_id", "BIGINT", "update id of the book update that produced it"),
            Column("epoch_ns", "BIGINT", "book epoch (see book_updates)"),
            Column("bid_px", "DOUBLE", f"best {levels} bid prices, best first", "array", levels),
            Column("bid_qty", "DOUBLE", f"best {levels} bid sizes", "array", levels),
            Column("ask_px", "DOUBLE", f"best {levels} ask prices, best first", "array", levels),
            Column("ask_qty", "DOUBLE", f"best {levels} ask sizes", "array", levels),
        ),
        key=key,
        time_column="bucket_ns" if extra else "ts_exchange_ns",
    )


class RawMessage(NamedTuple):
    """One message as received: the venue, its stream, when it arrived, and its text."""

    venue: str
    stream: str
    ts_local: int
    payload: str


@dataclass(frozen=True, eq=False)
class RawBatch:
    """Raw messages column-wise: message i is ``data[offsets[i]:offsets[i + 1]]`` (UTF-8 text),
    received at ``ts_local_ns[i]``.

    A file source reads whole blocks into one of these without a Python object per message; the
    parsers and the raw_messages table work on the bytes directly. ``RawBatch.of`` turns a list of
    RawMessage (live and simulated sources) into one. Text that is not valid UTF-8 (a str with a
    lone surrogate) is kept as its "surrogatepass" bytes, which no JSON parser accepts.
    """

    venue: str
    data: bytes
    offsets: np.ndarray  # int64, n + 1, offsets[0] == 0
    ts_local: np.ndarray  # int64, n

    def __len__(self) -> int:
        return int(self.ts_local.shape[0])

    def __iter__(self) -> Iterator[RawMessage]:
        """The messages one by one (a Python object each: for consumers that are not bulk)."""
        for ts, payload in zip(self.ts_local.tolist(), self.payloads(), strict=True):
            yield RawMessage(self.venue, "", ts, payload)

    @staticmethod
    def of(messages: list[RawMessage] | RawBatch) -> RawBatch:
        if isinstance(messages, RawBatch):
            return messages
        return RawBatch.from_texts(
            messages[0].venue if messages else "",
            [m.payload for m in messages],
            np.fromiter((m.ts_local for m in messages), np.int64, len(messages)),
        )

    @staticmethod
    def from_texts(venue: str, payloads: list[str], ts_local_ns: np.ndarray) -> RawBatch:
        text = "".join(payloads)
        if text.isascii():
            data = text.encode("ascii")
            lengths = np.fromiter(map(len, payloads), np.int64, len(payloads))
        else:
            parts = [p.encode("utf-8", "surrogatepass") for p in payloads]
            data = b"".join(parts)
            lengths = np.fromiter(map(len, parts), np.int64, len(parts))
        offsets = np.zeros(len(payloads) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return RawBatch(venue, data, offsets, np.asarray(ts_local_ns, np.int64))

    @staticmethod
    def concat(parts: list[RawBatch]) -> RawBatch:
        if len(parts) == 1:
            return parts[0]
        starts = np.cumsum([0] + [len(p.data) for p in parts[:-1]])
        return RawBatch(
            parts[0].venue,
            b"".join(p.data for p in parts),
            np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts, strict=True)]),
            np.concatenate([p.ts_local for p in parts]),
        )

    def slice(self, start: int, stop: int) -> RawBatch:
        """Messages start..stop-1 (a copy)."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return RawBatch(self.venue, self.data[a:b], self.offsets[start : stop + 1] - a, self.ts_local[start:stop])

    def payload(self, i: int) -> str:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])].decode("utf-8", "surrogatepass")

    def payloads(self) -> list[str]:
        data, off = self.data, self.offsets.tolist()
        return [data[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(off)]

    def payload_array(self) -> pa.Array:
        """The payloads as an Arrow string column, sharing this batch's bytes."""
        n = len(self)
        big = pa.LargeStringArray.from_buffers(n, pa.py_buffer(self.offsets), pa.py_buffer(self.data))
        return big.cast(pa.string())


RawInput = list[RawMessage] | RawBatch  # what sources yield and parsers take


def raw_table(messages: list[RawMessage]) -> pa.Table:
    """Arrow table of raw messages in RAW_MESSAGES layout."""
    if not messages:
        return RAW_MESSAGES.empty()
    venue, stream, ts, payload = zip(*messages, strict=True)
    return pa.table(
        [
            pa.array(venue, pa.string()),
            pa.array(stream, pa.string()),
            pa.array(ts, pa.int64()),
            pa.array(payload, pa.string()),
        ],
        schema=RAW_MESSAGES.arrow_schema,
    )


def list_array(offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    """Arrow list<double> from int offsets (n+1) and flat values (zero copy where possible)."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32, copy=False)), pa.array(values, pa.float64()))


def fixed_array(values: np.ndarray) -> pa.Array:
    """Arrow fixed-size list from a C-contiguous (n, k) float array."""
    n, k = values.shape
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(n * k)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), k)


def fixed_to_numpy(column: pa.ChunkedArray | pa.Array, size: int) -> np.ndarray:
    """(n, size) float array from an Arrow fixed-size list column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.empty((0, size))
    flat: np.ndarray = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(column), size)
