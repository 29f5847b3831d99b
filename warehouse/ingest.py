"""The ingest loop: a source's raw messages -> normalizer -> warehouse writer.

Used by ``python -m flows.ingest`` (the Prefect flow) for every source. The loop owns flushing
(every ``flush_interval`` or ``flush_rows``), resync requests when the book goes invalid, the
sync-event notes of the source, progress callbacks, the recording clock's offset per file or
session (warehouse.clocks), and a clean stop on SIGINT / SIGTERM: the source is told to stop,
everything buffered is flushed, the run is recorded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from core.clock import Clock, SystemClock
from core.config import AppConfig
from core.errors import UserError
from core.jit import Kernels, LateKernels
from core.timefmt import format_duration
from market.events import SYNC_EVENTS, RawInput
from market.normalize import Normalizer
from market.sources.base import Progress, Source
from warehouse.clocks import CLOCK_OFFSETS, ClockTracker
from warehouse.spool import Spool
from warehouse.writer import WarehouseWriter

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress, Counter[str]], None]

# A commit stores at most this many flushes' worth of rows (flush_rows each), so a reader waits for
# at most a few flushes' commit even while a file imports much faster than it is stored.
COMMIT_FLUSHES = 4


@dataclass
class IngestResult:
    run_id: str
    source: str
    status: str  # completed | stopped | failed
    counts: Counter[str] = field(default_factory=Counter)
    inserted: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    recovered: int = 0
    error: str | None = None
    exit_code: int = 0  # the command's exit code (core.errors): 0, or the failure's
    clock_offsets: list[dict[str, object]] = field(default_factory=list)  # clock_offsets rows of the run

    def summary(self) -> str:
        """One line: what came in, what was stored; and plainly so when nothing new was (already held)."""
        c, new = self.counts, self.inserted
        rate = c["messages"] / self.seconds if self.seconds > 0 else 0.0
        line = (
            f"{self.status}: {c['messages']:,} messages ({rate:,.0f}/s), {c['book_updates']:,} book updates, "
            f"{c['trades']:,} trades, {c['rejected']:,} rejected, {c['gaps']:,} gaps, "
            f"{new['snapshots']:,} new snapshots stored in {format_duration(int(self.seconds * 1e9))}"
        )
        if self.status == "failed":
            return line
        # (rows recovered from a spool count as new without having come in: never a negative "held")
        held_books = max(0, c["book_updates"] - new["book_updates"])
        held_trades = max(0, c["trades"] - new["trades"])
        if new["book_updates"] + new["trades"] == 0:
            if held_books + held_trades == 0:
                return line + "; nothing new stored: the source delivered no book updates or trades"
            return (
                line + f"; nothing new stored: all {held_books:,} book updates and {held_trades:,} trades "
                "were already held in the warehouse"
            )
        if held_books + held_trades > 0:
            line += f" ({held_books:,} book updates and {held_trades:,} trades were already held)"
        return line


class StopFlag:
    """Set by SIGINT / SIGTERM (or a test); the loop stops after the current batch."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self, name: str = "stop") -> None:
        self.signal_name = name
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def install_signal_handlers(flag: StopFlag) -> Callable[[], None]:
    """Route SIGINT/SIGTERM to the flag (main thread only); return a function that restores them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if flag.is_set():  # a second signal: stop waiting
            raise KeyboardInterrupt
        log.info("%s received: stopping after the current batch and flushing", name)
        flag.set(name)

    for s in previous:
        signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


async def _ingest(
    source: Source,
    cfg: AppConfig,
    stop: StopFlag,
    clock: Clock,
    result: IngestResult,
    writer: WarehouseWriter,
    on_progress: ProgressCallback | None,
    rehearsed: bool = False,
) -> None:
    wcfg = cfg.warehouse
    normalizer = _normalizer(source, cfg)
    late = LateKernels(log) if rehearsed else None  # after a rehearsal a kernel readied now is a stall
    archive = None if source.local_time else cfg.ingest.archive_latency
    clocks = ClockTracker(source.venue.name, source.symbol, result.run_id, archive_latency_ns=archive)
    last_flush = clock.monotonic_ns()
    last_status = last_flush
    async for batch in source.batches():
        if batch:
            gc_enabled = gc.isenabled()
            gc.disable()  # parsing creates many small acyclic objects: refcounting frees them
            try:
                out = normalizer.process(batch)
            finally:
                if gc_enabled:
                    gc.enable()
            writer.add(out.tables)
            _add_offset(writer, clocks.add(source.segment, out.tables), result)
            result.counts.update(out.counts)
            if normalizer.needs_resync:
                source.request_resync(normalizer.resync_reason)
        for note in source.take_notes():
            writer.add({SYNC_EVENTS.name: normalizer.note(note.kind, note.detail, note.ts_local)})
            result.counts[note.kind] += 1
        now = clock.monotonic_ns()
        if writer.buffered_rows >= wcfg.flush_rows or now - last_flush >= wcfg.flush_interval:
            writer.flush()
            last_flush = now
        if on_progress is not None:
            on_progress(source.progress(), result.counts)
        if now - last_status >= cfg.ingest.status_interval:
            last_status = now
            log.info("ingest %s: %s", source.name, _status_line(result.counts))
            if late is not None:
                late.check()
        if stop.is_set():
            source.stop()
            break
    if late is not None:
        late.check()
    _add_offset(writer, clocks.finish(), result)


def _normalizer(source: Source, cfg: AppConfig) -> Normalizer:
    w = cfg.warehouse
    return Normalizer(
        source.venue,
        source.symbol,
        source.tick_size,
        w.snapshot_levels,
        store_raw=w.store_raw,
        max_pending=cfg.ingest.max_pending_deltas,
    )


def rehearse(source: Source, cfg: AppConfig, rehearsal: Iterable[RawInput]) -> str:
    """Ready every kernel the ingest of ``source`` needs before it connects: ``rehearsal``'s
    batches (messages of the source's venue) through a normalizer of its own, then dropped. On a
    fresh checkout the kernels compile here, not inside the event loop on the first live batch
    (where the feed's stall watchdog would reconnect and lose updates)."""
    t0 = time.monotonic()
    before = Kernels.snapshot()
    normalizer = _normalizer(source, cfg)
    n = 0
    for batch in rehearsal:
        normalizer.process(batch)
        n += len(batch)
    readied = Kernels.snapshot().readied_since(before)
    line = f"kernels ready in {time.monotonic() - t0:.1f} s ({readied} readied on a rehearsal of {n:,} messages)"
    log.info(line)
    return line


def _add_offset(writer: WarehouseWriter, row: pa.Table | None, result: IngestResult) -> None:
    """Store a segment's recording-clock estimate and log it."""
    if row is None:
        return
    writer.add({CLOCK_OFFSETS.name: row})
    r = row.to_pylist()[0]
    result.clock_offsets.append(r)
    log.info(
        "recording clock of %s: offset %+.1f ms (%.1f %% quantile of local - exchange over %d events: %+.1f ms)",
        r["segment"], r["offset_ns"] / 1e6, 100 * r["quantile"], r["samples"], r["latency_q_ns"] / 1e6,
    )  # fmt: skip


def _status_line(c: Counter[str]) -> str:
    return (
        f"{c['messages']:,} messages, {c['book_updates']:,} book updates, {c['trades']:,} trades, "
        f"{c['rejected']:,} rejected, {c['gaps']:,} gaps, {c['reconnect']:,} reconnects"
    )


def run_ingest(
    source: Source,
    cfg: AppConfig,
    detail: str,
    stop: StopFlag | None = None,
    clock: Clock | None = None,
    on_progress: ProgressCallback | None = None,
    durable: bool = False,
    rehearsed: bool = False,
) -> IngestResult:
    """Ingest everything the source yields (or until stopped); return what happened.

    ``durable``: spool every flush before committing it (live streams), so at most one flush
    interval is lost if the process is killed; a later run commits what the spool holds.
    ``rehearsed``: ``rehearse`` readied the kernels before (a live stream's first batch must not
    wait for a compiler): a kernel readied while ingesting is logged as a stall.
    """
    clock = clock or SystemClock()
    stop = stop or StopFlag()
    wcfg = cfg.warehouse
    spool = Spool(cfg.resolve(wcfg.spool_dir), f"{source.name}") if durable else None
    writer = WarehouseWriter(
        cfg.resolve(wcfg.path),
        wcfg.snapshot_levels,
        lock_timeout_s=wcfg.lock_timeout / 1e9,
        spool=spool,
        max_commit_rows=COMMIT_FLUSHES * wcfg.flush_rows,
        lean=durable,  # a live stream runs for hours: DuckDB hands back what it frees
    )
    result = IngestResult(run_id=uuid.uuid4().hex[:12], source=source.name, status="running")
    started = clock.now_ns()
    t0 = clock.monotonic_ns()
    if spool is not None:
        result.recovered = writer.recover()
    writer.record_run(_run_row(result, detail, started, 0))
    restore = install_signal_handlers(stop)

    async def session() -> None:
        await source.start()
        try:
            await _ingest(source, cfg, stop, clock, result, writer, on_progress, rehearsed)
        finally:
            await source.aclose()

    try:
        asyncio.run(session())
        result.status = "stopped" if stop.is_set() else "completed"
    except UserError as exc:
        result.status = "failed"
        result.error, result.exit_code = str(exc), exc.exit_code
    except KeyboardInterrupt:
        result.status = "stopped"
    except Exception as exc:
        result.status = "failed"
        result.error = f"{exc.__class__.__name__}: {exc}"
        raise
    finally:
        restore()
        try:
            writer.close()
        except UserError as exc:
            result.status = "failed"
            result.error = result.error or str(exc)
            result.exit_code = result.exit_code or exc.exit_code
        result.inserted = writer.inserted
        result.seconds = (clock.monotonic_ns() - t0) / 1e9
        try:
            writer.record_run(_run_row(result, detail, started, clock.now_ns()))
        except UserError as exc:
            log.warning("could not record the run: %s", exc)
    return result


def _run_row(result: IngestResult, detail: str, started: int, ended: int) -> dict[str, object]:
    c = result.counts
    return {
        "run_id": result.run_id,
        "source": result.source,
        "detail": detail,
        "started_ns": started,
        "ended_ns": ended,
        "status": result.status,
        "messages": c["messages"],
        "book_updates": c["book_updates"],
        "trades": c["trades"],
        "rejected": c["rejected"],
        "gaps": c["gaps"],
    }
