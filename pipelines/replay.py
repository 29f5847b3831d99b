"""Recorded market data for the matching engine: warehouse snapshots and trades as a Market.

Book events are the ``snapshots`` rows (the top-N book after every update) in (ts_exchange_ns,
update_id) order; trades are in (ts_exchange_ns, ts_local_ns, trade_id) order. The engine puts a
trade before a book event with the same exchange time (see execution.kernel), so a print is
seen before the book that already reflects it.

Local receive times are the corrected ones (warehouse.clocks): the recorded time plus the
recording clock's offset estimated at import, never before the exchange time, so feed latency
comes from the data with its jitter even when the recorder's clock ran behind the exchange.
"""

from __future__ import annotations

import numpy as np

from core.config import AppConfig
from core.errors import UserError
from core.records import Books, Trades
from execution.market import Market
from market.events import fixed_to_numpy
from warehouse.clocks import load_offsets
from warehouse.db import reading
from warehouse.schema import stored_levels


def _window(start_ns: int | None, end_ns: int | None) -> tuple[str, list[object]]:
    sql = ""
    params: list[object] = []
    if start_ns is not None:
        sql += " AND ts_exchange_ns >= ?"
        params.append(int(start_ns))
    if end_ns is not None:
        sql += " AND ts_exchange_ns < ?"
        params.append(int(end_ns))
    return sql, params


def load_market(cfg: AppConfig, start_ns: int | None, end_ns: int | None, levels: int | None = None) -> Market:
    """Book events (with their epochs) and trades of the configured instrument with start <= ts_ex < end
    (None: unbounded), keeping ``levels`` levels per side (default: all the warehouse stores)."""
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise UserError("the replay window ends before it starts")
    venue, symbol = cfg.instrument.venue, cfg.instrument.venue_symbol
    path = cfg.resolve(cfg.warehouse.path)
    where, window = _window(start_ns, end_ns)
    with reading(path, cfg.warehouse.lock_timeout / 1e9, history=(start_ns, end_ns)) as con:  # and the lake's
        stored = stored_levels(con)
        if stored is None:
            raise UserError(f"{path}: no warehouse schema yet (run an ingest first)")
        con.execute("SET enable_progress_bar = false")  # a library call: no terminal output
        keep = stored if levels is None else levels
        if not 1 <= keep <= stored:
            raise UserError(f"the warehouse keeps {stored} book levels; {keep} asked")
        book = con.sql(
            "SELECT ts_exchange_ns, ts_local_ns, epoch_ns, bid_px, bid_qty, ask_px, ask_qty FROM snapshots "
            f"WHERE venue = ? AND symbol = ?{where} ORDER BY ts_exchange_ns, update_id",
            params=[venue, symbol, *window],
        ).to_arrow_table()
        trade_rows = con.sql(
            "SELECT ts_exchange_ns, ts_local_ns, price, qty, side FROM trades "
            f"WHERE venue = ? AND symbol = ?{where} ORDER BY ts_exchange_ns, ts_local_ns, trade_id",
            params=[venue, symbol, *window],
        ).fetchnumpy()
        clocks = load_offsets(con, venue, symbol)

    def side(name: str) -> np.ndarray:
        return np.ascontiguousarray(fixed_to_numpy(book.column(name), stored)[:, :keep], np.float64)

    book_ex = np.asarray(book.column("ts_exchange_ns").to_numpy(), np.int64)
    trade_ex = np.asarray(trade_rows["ts_exchange_ns"], np.int64)
    books = Books(
        book_ex,
        clocks.correct(np.asarray(book.column("ts_local_ns").to_numpy(), np.int64), book_ex),
        np.asarray(book.column("epoch_ns").to_numpy(), np.int64),
        side("bid_px"),
        side("bid_qty"),
        side("ask_px"),
        side("ask_qty"),
    )
    trades = Trades(
        trade_ex,
        clocks.correct(np.asarray(trade_rows["ts_local_ns"], np.int64), trade_ex),
        np.asarray(trade_rows["price"], np.float64),
        np.asarray(trade_rows["qty"], np.float64),
        np.asarray(trade_rows["side"], np.int8),
    )
    return Market(books, trades).validate()
