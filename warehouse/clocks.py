"""Recording clocks: estimate at import how far a recorder's clock ran behind the exchange, correct on read.

A recording's local receive time comes from the recording machine's clock, which can run behind
the exchange: in the shared Binance 2024 recordings every message has local - exchange of about
-1.52 s, an impossible negative feed latency. hftbacktest's converters shift every local stamp of
a file by the most negative latency seen (``correct_local_timestamp`` in
py-hftbacktest/hftbacktest/data/validation.py), so latency keeps its jitter and is never negative.
Here, per file (or per live session):

- ``estimate_offset``: offset = max(0, -q) where q is the ``quantile`` (default 0.1 %, an observed
  value) of local - exchange over the file's book updates and trades. A low quantile instead of
  the minimum keeps one corrupt stamp from shifting a whole file; the few events below it are read
  at zero latency (counted as ``clamped``). A clock that is not provably behind (q >= 0) is not
  moved: a clock running ahead cannot be told apart from a slow network.
- the estimate is stored in ``clock_offsets`` beside the recorded data, which stays as recorded
  (``ts_local_ns``): the correction is auditable and can be redone (``estimate_stored``).
- ``ClockOffsets.correct`` gives the corrected local time on read (``pipelines.replay``):
  ts_local_ns + offset of the segment whose recorded local range holds it, never before
  ts_exchange_ns. Data of no estimated segment (imported before the estimate existed) gets offset
  0 and only that floor, which is what the matching engine's delivery rule did with it anyway.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from market.events import BOOK_UPDATES, TRADES, Column, TableSpec

QUANTILE = 0.001  # of local - exchange, per file or session
MAX_SAMPLES = 2_000_000  # events per estimate (16 MB of latencies): a longer file or session gives a row per part

_VENUE = Column("venue", "VARCHAR", "venue id: bybit, binance-usdm")
_SYMBOL = Column("symbol", "VARCHAR", "the venue's symbol, e.g. BTCUSDT")

CLOCK_OFFSETS = TableSpec(
    name="clock_offsets",
    doc=(
        "The recording clock's offset per imported file or live session, estimated at import. Replays read "
        "ts_local_ns + offset_ns (never before ts_exchange_ns) for the events whose recorded ts_local_ns lies "
        "in [first_local_ns, last_local_ns]; the stored ts_local_ns stay as recorded."
    ),
    columns=(
        _VENUE,
        _SYMBOL,
        Column("segment", "VARCHAR", "the file name, or 'session' for a live or simulated ingest"),
        Column("run_id", "VARCHAR", "the ingest run that estimated it"),
        Column("first_local_ns", "BIGINT", "first recorded local time of the segment's book updates and trades"),
        Column("last_local_ns", "BIGINT", "last recorded local time of the segment's book updates and trades"),
        Column("samples", "BIGINT", "book updates and trades the estimate is computed from"),
        Column("quantile", "DOUBLE", "the quantile q of local - exchange the offset cancels"),
        Column("latency_min_ns", "BIGINT", "smallest recorded local - exchange"),
        Column("latency_q_ns", "BIGINT", "the q quantile of recorded local - exchange (an observed value)"),
        Column("latency_median_ns", "BIGINT", "median recorded local - exchange"),
        Column("offset_ns", "BIGINT", "added to the recorded local time on read: max(0, -latency_q_ns)"),
        Column("clamped", "BIGINT", "events still before their exchange time after the offset: read at it"),
        Column(
            "local_time",
            "BOOLEAN",
            "false: the data has no local receive time (an archive: ts_local_ns is the exchange's time) and "
            "offset_ns is the configured ingest.archive_latency, the feed latency replays read it with",
        ),
    ),
    key=("venue", "symbol", "first_local_ns", "last_local_ns"),
    time_column="first_local_ns",
)


@dataclass(frozen=True)
class ClockEstimate:
    """What one file's (or session's) latencies say about its clock."""

    samples: int
    quantile: float
    min_ns: int
    q_ns: int
    median_ns: int
    offset_ns: int
    clamped: int

    @property
    def corrected_median_ns(self) -> int:
        return self.median_ns + self.offset_ns


def estimate_offset(latency_ns: np.ndarray, quantile: float = QUANTILE) -> ClockEstimate:
    """The offset that makes the ``quantile`` of ``latency_ns`` (local - exchange) zero if it is negative.

    The quantile is an observed value: the ``floor(quantile * (n - 1))``-th smallest latency
    (``np.quantile(..., method="lower")``). ``latency_ns`` is left as it is."""
    return _estimate_in_place(np.array(latency_ns, np.int64), quantile)


def _estimate_in_place(lat: np.ndarray, quantile: float) -> ClockEstimate:
    """``estimate_offset`` on an int64 array it may reorder: one partial sort in place and no copy,
    so a live session's part (2 million latencies, 16 MB) needs no second and third 16 MB for its
    estimate (``np.quantile`` copies the array on each call)."""
    n = int(lat.size)
    if n == 0:
        raise ValueError("no events to estimate a clock offset from")
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile {quantile}: a low quantile in [0, 0.5) is expected")
    # np.quantile's "lower" index: floor((n - 1) * q), the same float product
    iq, im = (int(np.floor((n - 1) * np.float64(x))) for x in (quantile, 0.5))
    lat.partition(sorted({0, iq, im}))  # the 0th, iq-th and im-th smallest at their places
    q = int(lat[iq])
    offset = max(0, -q)
    return ClockEstimate(
        samples=n,
        quantile=quantile,
        min_ns=int(lat[0]),
        q_ns=q,
        median_ns=int(lat[im]),
        offset_ns=offset,
        # lat + offset < 0 means lat < -offset <= q: only among the iq smallest
        clamped=int(np.count_nonzero(lat[:iq] < -offset)),
    )


def _column(table: pa.Table | None, name: str) -> np.ndarray:
    if table is None or table.num_rows == 0:
        return np.zeros(0, np.int64)
    return np.asarray(table.column(name).to_numpy(), np.int64)


class ClockTracker:
    """Collects local - exchange of every stored book update and trade, segment by segment (one file, or
    a whole live session), and gives one ``clock_offsets`` row when a segment ends."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        run_id: str,
        quantile: float = QUANTILE,
        archive_latency_ns: int | None = None,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        """``archive_latency_ns``: the data has no local receive time (archives stamp it with the
        exchange's time): its segments read with this feed latency instead of an estimate.
        ``max_samples``: a segment holding this many events gives its row and goes on as a new one
        (a live session never ends: its latencies must not pile up in memory for ever)."""
        self.venue, self.symbol, self.run_id, self.quantile = venue, symbol, run_id, quantile
        self.archive_latency_ns = archive_latency_ns
        self.max_samples = max_samples
        self.segment: str | None = None
        self._buf = np.empty(0, np.int64)
        self._reset()

    def _reset(self) -> None:
        # what an estimate needs and nothing more: the latencies (local - exchange, copied into a
        # buffer of the tracker's own: a view of a batch's column would keep that batch's Arrow
        # buffers alive for the whole segment, hours of a live session) and the segment's first and
        # last local time. The buffer is kept from part to part: a session that never ends holds
        # one part's latencies, and its memory stays level (with a list of each batch's array, joined
        # and copied for each estimate, the ingest's heap rose 27 MB over its first part; with the
        # buffer 15 MB, the buffer itself: an A/B at speed 24)
        self._n = 0
        self._first: int | None = None
        self._last: int | None = None

    def _room(self, more: int) -> np.ndarray:
        """The buffer, grown (doubling, up to a part and one batch) to take ``more`` latencies."""
        need = self._n + more
        if need > self._buf.size:
            grown = np.empty(max(need, min(2 * self._buf.size, self.max_samples)), np.int64)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        return self._buf

    def add(self, segment: str, tables: dict[str, pa.Table]) -> pa.Table | None:
        """Take a batch's normalized tables; the row of the previous segment if this batch starts a new one."""
        done = self.finish() if segment != self.segment or self._n >= self.max_samples else None
        self.segment = segment
        for spec in (BOOK_UPDATES, TRADES):
            t = tables.get(spec.name)
            local = _column(t, "ts_local_ns")
            if local.size:
                buf = self._room(local.size)
                np.subtract(local, _column(t, "ts_exchange_ns"), out=buf[self._n : self._n + local.size])
                first, last = int(local.min()), int(local.max())
                self._first = first if self._first is None else min(self._first, first)
                self._last = last if self._last is None else max(self._last, last)
                self._n += local.size
        return done

    def finish(self) -> pa.Table | None:
        """The current segment's row (None when it held no event); the tracker then starts afresh."""
        n, first, last, segment = self._n, self._first, self._last, self.segment
        self._reset()
        if n == 0 or first is None or last is None or segment is None:
            return None
        est = _estimate_in_place(self._buf[:n], self.quantile)  # the part is done with: reordered in place
        if self.archive_latency_ns is not None:
            est = dataclasses.replace(est, offset_ns=self.archive_latency_ns, clamped=0)
        local_time = self.archive_latency_ns is None
        return offsets_row(self.venue, self.symbol, segment, self.run_id, first, last, est, local_time)


def offsets_row(
    venue: str,
    symbol: str,
    segment: str,
    run_id: str,
    first_local: int,
    last_local: int,
    est: ClockEstimate,
    local_time: bool = True,
) -> pa.Table:
    """One ``clock_offsets`` row."""
    values: list[object] = [
        venue,
        symbol,
        segment,
        run_id,
        first_local,
        last_local,
        est.samples,
        est.quantile,
        est.min_ns,
        est.q_ns,
        est.median_ns,
        est.offset_ns,
        est.clamped,
        local_time,
    ]
    return pa.table(
        [pa.array([v], f.type) for v, f in zip(values, CLOCK_OFFSETS.arrow_schema, strict=True)],
        schema=CLOCK_OFFSETS.arrow_schema,
    )


@dataclass(frozen=True)
class ClockOffsets:
    """The stored offsets of one (venue, symbol), ordered by ``first_local``."""

    first_local: np.ndarray  # int64
    last_local: np.ndarray  # int64
    offset: np.ndarray  # int64

    def offsets_for(self, ts_local: np.ndarray) -> np.ndarray:
        """The offset of the segment holding each recorded local time (0 outside every segment)."""
        ts = np.asarray(ts_local, np.int64)
        if self.first_local.size == 0 or ts.size == 0:
            return np.zeros(ts.shape, np.int64)
        k = np.searchsorted(self.first_local, ts, side="right") - 1
        kk = np.maximum(k, 0)
        inside = (k >= 0) & (ts <= self.last_local[kk])
        return np.where(inside, self.offset[kk], 0).astype(np.int64)

    def correct(self, ts_local: np.ndarray, ts_ex: np.ndarray) -> np.ndarray:
        """Corrected local receive times: recorded + offset, never before the exchange time."""
        ts = np.asarray(ts_local, np.int64)
        out: np.ndarray = np.maximum(ts + self.offsets_for(ts), np.asarray(ts_ex, np.int64))
        return out


NO_OFFSETS = ClockOffsets(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


def has_table(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse has a clock_offsets table (a warehouse made before it has none)."""
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [CLOCK_OFFSETS.name]
    ).fetchone()
    return bool(row and row[0])


def load_offsets(con: duckdb.DuckDBPyConnection, venue: str, symbol: str) -> ClockOffsets:
    """The stored offsets of (venue, symbol); none for a warehouse from before the table existed."""
    if not has_table(con):
        return NO_OFFSETS
    rows = con.execute(
        "SELECT first_local_ns, last_local_ns, offset_ns FROM clock_offsets WHERE venue = ? AND symbol = ? "
        "ORDER BY first_local_ns, last_local_ns",
        [venue, symbol],
    ).fetchnumpy()
    return ClockOffsets(
        np.asarray(rows["first_local_ns"], np.int64),
        np.asarray(rows["last_local_ns"], np.int64),
        np.asarray(rows["offset_ns"], np.int64),
    )


@dataclass(frozen=True)
class Segment:
    venue: str
    symbol: str
    segment: str
    run_id: str
    first_local_ns: int
    last_local_ns: int
    estimate: ClockEstimate
    local_time: bool = True  # False: an archive without local receive time, read at the configured latency


def segments(con: duckdb.DuckDBPyConnection) -> list[Segment]:
    """Every stored estimate, by venue, symbol and time (``warehouse show``)."""
    if not has_table(con):
        return []
    rows = con.execute(
        "SELECT venue, symbol, segment, run_id, first_local_ns, last_local_ns, samples, quantile, latency_min_ns, "
        "latency_q_ns, latency_median_ns, offset_ns, clamped, local_time IS NOT false FROM clock_offsets "
        "ORDER BY venue, symbol, first_local_ns"
    ).fetchall()
    return [
        Segment(
            v,
            s,
            seg,
            run,
            int(lo),
            int(hi),
            ClockEstimate(int(n), float(q), int(mn), int(qv), int(md), int(off), int(c)),
            bool(local),
        )
        for v, s, seg, run, lo, hi, n, q, mn, qv, md, off, c, local in rows
    ]


def uncovered(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    """Book updates and trades per (venue, symbol) whose recorded local time lies in no estimated segment."""
    have = has_table(con)
    out: dict[tuple[str, str], int] = {}
    for table in (BOOK_UPDATES.name, TRADES.name):
        if have:
            sql = (
                f"SELECT venue, symbol, count(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM clock_offsets c "
                "WHERE c.venue = t.venue AND c.symbol = t.symbol "
                "AND t.ts_local_ns BETWEEN c.first_local_ns AND c.last_local_ns) GROUP BY ALL"
            )
        else:
            sql = f"SELECT venue, symbol, count(*) FROM {table} GROUP BY ALL"
        for venue, symbol, n in con.execute(sql).fetchall():
            out[(venue, symbol)] = out.get((venue, symbol), 0) + int(n)
    return {k: v for k, v in out.items() if v}


def estimate_stored(
    con: duckdb.DuckDBPyConnection,
    venue: str,
    symbol: str,
    first_local: int,
    last_local: int,
    quantile: float = QUANTILE,
) -> ClockEstimate:
    """Redo an estimate from the stored book updates and trades of a recorded local range (an audit)."""
    lat = [
        np.asarray(
            con.execute(
                f"SELECT ts_local_ns - ts_exchange_ns AS lat FROM {table} WHERE venue = ? AND symbol = ? "
                "AND ts_local_ns BETWEEN ? AND ?",
                [venue, symbol, first_local, last_local],
            ).fetchnumpy()["lat"],
            np.int64,
        )
        for table in (BOOK_UPDATES.name, TRADES.name)
    ]
    return estimate_offset(np.concatenate(lat), quantile)
