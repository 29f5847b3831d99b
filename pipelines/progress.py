"""Progress display for long jobs: a rich progress bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType
from typing import Self

from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

from market.sources.base import Progress as SourceProgress


class _Display:
    """A rich bar on a terminal, else a line on stderr at most every ``every_s`` seconds."""

    def __init__(self, label: str, every_s: float = 5.0, total: float | None = None) -> None:
        self.label = label
        self.every_s = every_s
        self._total = total
        self._tty = sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last = 0.0

    def __enter__(self) -> Self:
        if self._tty:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self._total, info="")
        return self

    def _show(self, done: float, total: float | None, text: str, info: str, final: bool = False) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total, info=info)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or final:
            self._last = now
            print(f"{self.label}: {text}  {info}", file=sys.stderr, flush=True)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()


class IngestProgress(_Display):
    """Callback for run_ingest: shows how far the source is and what was ingested."""

    def __call__(self, p: SourceProgress, counts: Counter[str]) -> None:
        info = f"{counts['book_updates']:,} book updates, {counts['trades']:,} trades"
        text = f"{100 * p.done / p.total:5.1f}%" if p.total else f"{p.done:,.0f} {p.unit}"
        self._show(p.done, p.total, text, info)


class StepProgress(_Display):
    """Callback ``(fraction done, detail)`` for chunked jobs (feature builds, training)."""

    def __init__(self, label: str, every_s: float = 5.0) -> None:
        super().__init__(label, every_s, total=1.0)

    def __call__(self, fraction: float, info: str) -> None:
        f = min(fraction, 1.0)
        self._show(f, 1.0, f"{100 * f:5.1f}%", info, final=f >= 1.0)
