"""The gateway as the runner drives it: the strategies' ``Gateway`` plus reports, account and clock.

Two implementations, each complete (tests/test_gateway.py has mypy prove it): ``PaperGateway``
(live/paper.py, the backtester's matching engine fed by the ticks) and ``BybitGateway``
(live/bybit_gateway.py, real orders). Where they differ is in time, and that difference is theirs,
not the loop's:

- the paper exchange runs on the data's clock: it takes every tick (``on_tick``), is run to each
  decision's local time (``run_to``, waking the strategy on the way) and may not run ahead of the
  ticks it holds (``ready_until``: a decision waits until every tick stamped up to it is in);
- the live gateway runs on the exchange's clock: it only learns the book from the ticks, a
  decision is taken at once, and its requests go out and reports come back in ``sync``.
"""

from __future__ import annotations

from typing import Any, Protocol

from execution.venue import Gateway
from live.feed import Tick
from warehouse.journal import Restored


class RunnerGateway(Gateway, Protocol):
    name: str  # "paper" or "bybit": the status line's
    errors: int  # exchange errors so far (the kill switch counts bursts)
    rate_limited: int  # rate-limit answers so far
    post_only_rejects: int  # post-only requests refused because they would have taken

    def account(self) -> dict[str, float]:
        """Position, cash, equity, fees and funding: what the journal's account records hold."""
        ...

    def take_events(self) -> list[dict[str, Any]]:
        """Requests, reports and fills since the last call, each a dict with ``kind`` / ``ts_ns`` /
        ``order_id`` and the record's data (the journal's records)."""
        ...

    def on_tick(self, tick: Tick) -> None:
        """A tick of the feed (paper: into the simulated exchange; live: the book it now knows)."""
        ...

    def run_to(self, t: int) -> bool:
        """Run to local time ``t`` or the first wake of the strategy on the way (True). Live: no-op."""
        ...

    def ready_until(self, ts: int) -> int:
        """The latest local time a decision can be taken at before the tick stamped ``ts`` is in."""
        ...

    def passed(self, t: int) -> bool:
        """Already past local time ``t``: a decision due then is not taken."""
        ...

    async def pause(self, ns: int) -> None:
        """Let ``ns`` pass before a resend, on this gateway's clock: live, the wall clock (asleep);
        paper, none here (its clock is the data's, which the loop runs on by ``run_to``)."""
        ...

    async def begin(self, restored: Restored, now_ns: int) -> None:
        """A session starts on the account the journal restored (live: the exchange is the truth)."""
        ...

    async def sync(self) -> bool:
        """Send what is queued and take what came back; True if the strategy should look again."""
        ...

    async def aclose(self) -> None: ...
