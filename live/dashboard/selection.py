"""The runner's sessions in a journal, and the part of the journal the page looks at.

A session is one run of the runner (a ``start`` record, its records, a ``stop`` record unless it
was killed). Its records are stamped with the data's clock (a replay's are months old), its start
and stop with the wall clock, so a session is told by its id, never by a time span. The page
chooses a session (or all) and a range ending at the newest record of that choice: the last
15 minutes, hour, 6 hours, day, or everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.timefmt import format_ns

NS = 1_000_000_000
RANGES: dict[str, tuple[str, int | None]] = {
    "all": ("all of it", None),
    "15m": ("last 15 min", 15 * 60 * NS),
    "1h": ("last hour", 3600 * NS),
    "6h": ("last 6 h", 6 * 3600 * NS),
    "24h": ("last 24 h", 24 * 3600 * NS),
}


@dataclass
class Session:
    index: int
    id: str
    started: int = 0  # wall clock of its start record (0: records without one)
    mode: str = ""
    source: str = ""
    strategy: str = ""
    model: str = ""
    stopped: int | None = None  # wall clock of its stop record
    reason: str = ""
    first_ts: int | None = None  # the data clock of its first and last record
    last_ts: int | None = None

    def seen(self, ts: int) -> None:
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "started": format_ns(self.started) if self.started else None,
            "stopped": format_ns(self.stopped) if self.stopped else None, "reason": self.reason,
            "mode": self.mode, "source": self.source, "strategy": self.strategy, "model": self.model,
            "first": format_ns(self.first_ts) if self.first_ts is not None else None,
            "last": format_ns(self.last_ts) if self.last_ts is not None else None,
        }  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """Records of ``sessions`` (None: all) with a data-clock time in ``[t0, t1]`` (None: open)."""

    sessions: frozenset[int] | None = None
    t0: int | None = None
    t1: int | None = None
    session: str = "all"
    range: str = "all"

    def has(self, ts: int, session: int) -> bool:
        return (
            (self.sessions is None or session in self.sessions)
            and (self.t0 is None or ts >= self.t0)
            and (self.t1 is None or ts <= self.t1)
        )

    def has_session(self, session: int) -> bool:
        return self.sessions is None or session in self.sessions

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session, "range": self.range, "range_label": RANGES[self.range][0],
            "from": format_ns(self.t0) if self.t0 is not None else None,
            "to": format_ns(self.t1) if self.t1 is not None else None,
        }  # fmt: skip


def select(sessions: list[Session], session: str | None, range_key: str | None) -> Selection:
    """The page's choice: ``session`` an id, "all", or None/"" for the newest (this session);
    ``range_key`` one of ``RANGES`` (anything else: all)."""
    key = range_key if range_key in RANGES else "all"
    if session == "all" or not sessions:
        chosen, sid = None, "all"
    else:
        match = [s for s in sessions if s.id == session] or [sessions[-1]]
        chosen, sid = frozenset({match[0].index}), match[0].id
    pool = sessions if chosen is None else [sessions[i] for i in chosen]
    ends = [s.last_ts for s in pool if s.last_ts is not None]
    t1 = max(ends) if ends else None
    span = RANGES[key][1]
    t0 = t1 - span if span is not None and t1 is not None else None
    return Selection(chosen, t0, t1 if t0 is not None else None, sid, key)
