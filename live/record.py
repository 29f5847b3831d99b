"""What the runner writes down: the gateway's events, each decision and the account, in the journal.

Every request, report and fill the gateway reports becomes a journal record as it is taken; a
decision's record holds its probabilities, target and tick-to-decision latency and the book it
saw (the dashboard's price chart); an ``account`` record marks the account at the data's time.
``Stats`` counts what the status line and the health records show.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from execution.risk import RiskManager
from execution.strategy import Signal
from execution.venue import BookView
from live.decide import Loaded
from live.gateway import RunnerGateway
from warehouse.journal import Journal


@dataclass
class Stats:
    ticks: int = 0
    decisions: int = 0
    signals: int = 0
    fills: int = 0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=100_000))

    def latency(self, q: float) -> float:
        """Tick-to-decision latency quantile, microseconds (NaN before the first decision)."""
        return float(np.quantile(np.fromiter(self.latencies_ns, np.int64), q)) / 1e3 if self.latencies_ns else math.nan


@dataclass
class Event:
    """One of the gateway's events, as journalled: kind, time, order id and the record's data."""

    kind: str
    ts: int
    order_id: int | None
    data: dict[str, Any]


class Record:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.stats = Stats()
        self.data_before = -1  # the market time of the account a restart continues

    def events(self, gw: RunnerGateway) -> list[Event]:
        """Journal the gateway's events since the last call; return them."""
        out: list[Event] = []
        for ev in gw.take_events():
            e = Event(ev.pop("kind"), ev.pop("ts_ns"), ev.pop("order_id", None), ev)
            self.journal.add(e.kind, e.ts, e.order_id, **e.data)
            self.stats.fills += e.kind == "fill"
            out.append(e)
        return out

    def decision(self, t: int, s: Signal, m: Loaded, target: float, latency_ns: int, book: BookView) -> None:
        st = self.stats
        st.latencies_ns.append(latency_ns)
        st.decisions += 1
        st.signals += s.direction != 0
        self.journal.add(
            "decision",
            t,
            grid_ns=s.ts_ns,
            feature_set=m.model.feature_set,
            model_version=m.version,
            p_up=s.p_up,
            p_down=s.p_down,
            direction=s.direction,
            confidence=max(s.p_up, s.p_down),
            target=target,
            size=abs(target),
            latency_us=latency_ns / 1e3,
            bid=book.bid,
            ask=book.ask,
        )

    def account(self, gw: RunnerGateway, r: RiskManager, data_ts: int, execution: dict[str, float]) -> None:
        """The account as the gateway tells it, marked at market time ``data_ts`` (a replay: the data's)."""
        self.journal.add(
            "account",
            gw.now,
            None,
            **gw.account(),
            data_ts=max(data_ts, self.data_before),
            peak=r.peak,
            day=r.day,
            day_start=r.day_start,
            risk=r.state.name,
            execution=execution,
        )
