"""The live feed passes every tick on: a trade stamped before a book update already passed on is applied."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.records import Book
from live.feed import SourceFeed, Tick
from market.sources.files import FileSource
from tests.conftest import ConfigFactory
from tests.test_clocks import MS, T0, write_recording

# arrival order (one message per batch): the trade stamped 90 ms arrives after the diff stamped 100 ms;
# the trade stamped 260 ms arrives before the diff stamped 250 ms
ARRIVALS = [("snap", 0, 1), ("diff", 100, 1), ("trade", 90, 15), ("diff", 200, 1), ("trade", 260, 0), ("diff", 250, 20)]


def test_a_trade_stamped_before_a_passed_book_update_is_applied_not_dropped(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    path = write_recording(tmp_path / "late.gz", ARRIVALS, 0, 1000)
    feed = SourceFeed(FileSource([path], batch_lines=1), make_config())

    async def run() -> list[list[Tick]]:
        return [b async for b in feed.batches()]

    batches = asyncio.run(run())
    seen = [("book" if isinstance(t, Book) else "trade", (t.ts_ex // MS) - T0) for b in batches for t in b]
    # the late trade goes on with the next book update (first: it is older); the early one after the
    # diff stamped before it, at the end of the stream
    assert seen == [("book", 0), ("book", 100), ("trade", 90), ("book", 200), ("book", 250), ("trade", 260)]
    assert feed.counts["late"] == 1 and feed.counts["trades"] == 2 and feed.counts["book_updates"] == 4
