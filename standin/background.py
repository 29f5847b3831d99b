"""Run the stand-in on its own event loop in a thread: for tests, the demo and notebooks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from standin.feeds import Feed
from standin.private import PrivateSpec
from standin.server import StandinServer

T = TypeVar("T")


class BackgroundStandin:
    """``with BackgroundStandin(feed) as s: ...`` serves on ``s.url`` until the block ends.

    Clients should talk to it over HTTP / WebSocket like to any server; ``inject`` is a
    convenience that does what ``POST /_standin/fault`` does, on the server's own loop.
    """

    def __init__(self, feed: Feed, host: str = "127.0.0.1", port: int = 0, private: PrivateSpec | None = None) -> None:
        self.server = StandinServer(feed, host, port, private)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="standin", daemon=True)

    def __enter__(self) -> BackgroundStandin:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        await self.server.start()
        await self.server.wait_ready()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._call(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    def inject(self, kind: str, seconds: float = 5.0, on: str | None = None, count: int = 1) -> None:
        """Apply a fault on the server's loop; returns once it is in place (a bad one raises here)."""

        async def apply() -> None:
            self.server.inject(kind, seconds, on, count)

        self._call(apply())

    def history(self) -> list[list[Any]]:
        """What ``GET /_standin/history`` returns: [u, cts_ms, bid, bid_qty, ask, ask_qty] per update."""

        async def snap() -> list[list[Any]]:
            return self.server.history.rows()

        return self._call(snap())

    def stats(self) -> dict[str, Any]:
        """What ``GET /_standin/stats`` returns."""

        async def snap() -> dict[str, Any]:
            return self.server.stats_dict()

        return self._call(snap())
