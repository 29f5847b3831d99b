"""Progress display for long jobs: a rich progress bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType

from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

from market.sources.base import Progress as SourceProgress


class IngestProgress:
    """Callback for run_ingest: shows how far the source is and what was ingested."""

    def __init__(self, label: str, every_s: float = 5.0) -> None:
        self.label = label
        self.every_s = every_s
        self._tty = sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last = 0.0

    def __enter__(self) -> IngestProgress:
        if self._tty:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None, info="")
        return self

    def __call__(self, p: SourceProgress, counts: Counter[str]) -> None:
        info = f"{counts['book_updates']:,} book updates, {counts['trades']:,} trades"
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=p.done, total=p.total, info=info)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            pct = f"{100 * p.done / p.total:5.1f}%" if p.total else f"{p.done:,.0f} {p.unit}"
            print(f"{self.label}: {pct}  {info}", file=sys.stderr, flush=True)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()


class StepProgress:
    """Callback ``(fraction done, detail)`` for chunked jobs (feature builds, reports)."""

    def __init__(self, label: str, every_s: float = 5.0) -> None:
        self.label = label
        self.every_s = every_s
        self._tty = sys.stderr.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last = 0.0

    def __enter__(self) -> StepProgress:
        if self._tty:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=1.0, info="")
        return self

    def __call__(self, fraction: float, info: str) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=min(fraction, 1.0), info=info)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or fraction >= 1.0:
            self._last = now
            print(f"{self.label}: {100 * min(fraction, 1.0):5.1f}%  {info}", file=sys.stderr, flush=True)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
