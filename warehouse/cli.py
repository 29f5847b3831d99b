"""``python -m warehouse show | export | retain | schema``: look into the warehouse, get data out of it,
move old rows to the Parquet archive."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import duckdb

from core.cli import add_config_argument, run_main
from core.config import AppConfig, load_config
from core.errors import UserError
from core.timefmt import format_duration, format_ns, parse_duration_ns, parse_time_ns
from warehouse import clocks, feature_tables, growth, lake, reader, retention
from warehouse.db import one, reading
from warehouse.schema import describe, stored_levels

EXPORT_TABLES = ("snapshots", "features", "labels")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}.wal")) if p.exists())


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def show(cfg: AppConfig, out: TextIO | None = None) -> None:
    path = cfg.resolve(cfg.warehouse.path)
    timeout = cfg.warehouse.lock_timeout / 1e9
    with reading(path, timeout) as con:
        levels = stored_levels(con)
        stats = reader.table_stats(con)
        syncs = reader.sync_counts(con)
        n_sil, longest = reader.silences(con, cfg.warehouse.gap_threshold)
        runs = con.execute(
            "SELECT source, status, started_ns, ended_ns, messages, rejected, gaps FROM ingest_runs "
            "ORDER BY started_ns DESC LIMIT 5"
        ).fetchall()
        segs = clocks.segments(con)
        bare = clocks.uncovered(con)
        grown = growth.measure(con)
        archive = cfg.resolve(cfg.warehouse.retention.archive)
        held = lake.tables(con)
        # on S3 a listing of every object would cost a request per 1,000 keys: not looked for
        unlisted = lake.unlisted(con, path.parent, archive) if isinstance(archive, Path) else None

    def p(*parts: object) -> None:
        print(*parts, file=out or sys.stdout)

    p(f"warehouse {path}")
    p(f"  size on disk {_mb(_size(path))}, snapshots keep {levels} levels")
    if not stats:
        p("  empty: no data ingested yet")
        return
    p("")
    p(f"  {'table':<13} {'venue':<13} {'symbol':<8} {'rows':>12}  {'from':<24} {'to':<24} span")
    for s in stats:
        span = format_duration(s.last_ns - s.first_ns)
        p(
            f"  {s.table:<13} {s.venue:<13} {s.symbol or '*':<8} {s.rows:>12,}  "
            f"{format_ns(s.first_ns):<24} {format_ns(s.last_ns):<24} {span}"
        )
    p("")
    p("  book integrity (sync_events):")
    if not syncs:
        p("    none recorded")
    for (venue, symbol), kinds in syncs.items():
        detail = ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
        p(f"    {venue}/{symbol}: {detail}")
    p(f"  sequence gaps detected: {sum(k.get('gap', 0) for k in syncs.values()):,}")
    thr = format_duration(cfg.warehouse.gap_threshold)
    p(f"  silences longer than {thr} (no book update): {n_sil:,}")
    for sil in longest:
        p(f"    {sil.venue}/{sil.symbol}: {sil.seconds:,.1f}s after {format_ns(sil.after_ns)}")
    _show_clocks(p, segs, bare)
    if runs:
        p("")
        p("  last ingest runs:")
        for source, status, start, end, msgs, rej, gaps in runs:
            took = format_duration(end - start) if end else "running or killed"
            p(
                f"    {format_ns(start)}  {source:<6} {status:<9} {msgs:>12,} messages, {rej:,} rejected, "
                f"{gaps:,} gaps ({took})"
            )
    growth.show(p, grown, held, unlisted, str(archive))


def _ms(ns: int) -> str:
    return f"{ns / 1e6:+,.1f} ms"


def _show_clocks(p: Callable[..., None], segs: list[clocks.Segment], bare: dict[tuple[str, str], int]) -> None:
    """The recording clocks: the offset replays add to each file's (or session's) local times."""
    p("")
    p("  recording clocks (replays read local time + offset, never before exchange time):")
    for s in segs:
        e = s.estimate
        if not s.local_time:
            p(
                f"    {s.venue}/{s.symbol} {s.segment}: no local receive time (an archive: stamped with the "
                f"exchange's time); replays read it {_ms(e.offset_ns)} later (ingest.archive_latency at import)"
            )
            p(f"      push - exchange time over {e.samples:,} events: min {_ms(e.min_ns)}, median {_ms(e.median_ns)}")
            continue
        behind = f"ran {e.offset_ns / 1e9:.3f} s behind the exchange" if e.offset_ns else "not behind the exchange"
        p(f"    {s.venue}/{s.symbol} {s.segment}: clock {behind}, offset {_ms(e.offset_ns)}")
        p(
            f"      local - exchange over {e.samples:,} events: {100 * e.quantile:g} % quantile {_ms(e.q_ns)}, "
            f"min {_ms(e.min_ns)}, median {_ms(e.median_ns)}; corrected median {_ms(e.corrected_median_ns)}, "
            f"{e.clamped:,} read at zero latency"
        )
    for (venue, symbol), n in sorted(bare.items()):
        p(f"    {venue}/{symbol}: {n:,} book updates and trades not estimated (imported before): offset 0")
    if not segs and not bare:
        p("    none recorded")


def export(cfg: AppConfig, args: argparse.Namespace) -> str:
    path = cfg.resolve(cfg.warehouse.path)
    if args.table not in EXPORT_TABLES:
        raise UserError(f"--table {args.table}: can export {', '.join(EXPORT_TABLES)}")
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out}: is a directory")
    if not out.parent.exists():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    every = None
    if args.every is not None:
        try:
            every = parse_duration_ns(args.every)
        except ValueError as exc:
            raise UserError(f"--every: {exc}") from None
    start = parse_time_ns(args.start) if args.start else None
    end = parse_time_ns(args.end) if args.end else None
    if args.table != "snapshots":
        return _export_built(cfg, args, out, start, end)
    # and the lake's history up to the end: a sample's book is the last one at or before it, however old
    with reading(path, cfg.warehouse.lock_timeout / 1e9, history=(None, None if end is None else end + 1)) as con:
        have = stored_levels(con) or 0
        levels = args.levels if args.levels is not None else have
        if not 1 <= levels <= have:
            raise UserError(f"--levels {levels}: the warehouse keeps 1..{have} levels")
        venue, symbol = reader.pick_pair(
            con, args.venue, args.symbol, (cfg.instrument.venue, cfg.instrument.venue_symbol)
        )
        first, last = reader.time_bounds(con, venue, symbol)
        lo = start if start is not None else first
        hi = end if end is not None else last
        if every is None:
            rel = reader.snapshots_between(con, venue, symbol, levels, lo, hi)
        else:
            if start is None:  # first sample on the grid of `every`, at or after the first snapshot
                lo = -(-first // every) * every
            rel = reader.sampled_snapshots(con, venue, symbol, levels, every, lo, hi)
        n = _write(con, rel, args.format, out)
    what = f"every {args.every}" if every else "every update"
    return f"wrote {n:,} rows ({venue}/{symbol}, {levels} levels, {what}) to {out}"


def _write(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, fmt: str, out: Path) -> int:
    """Write to a temporary file and rename it: an interrupted export never leaves half a file."""
    tmp = out.with_name(out.name + ".partial")
    try:
        if fmt == "csv":
            rel.write_csv(str(tmp))
        else:
            rel.write_parquet(str(tmp))
        rows = one(con, f"SELECT count(*) FROM {'read_csv' if fmt == 'csv' else 'read_parquet'}(?)", [str(tmp)])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return int(rows[0]) if rows else 0


def _export_built(cfg: AppConfig, args: argparse.Namespace, out: Path, start: int | None, end: int | None) -> str:
    """features / labels of one set (default: the current config's), ordered by grid time."""
    if args.every is not None or args.levels is not None:
        raise UserError(f"--every and --levels apply to --table snapshots, not {args.table}")
    path = cfg.resolve(cfg.warehouse.path)
    set_col = "feature_set" if args.table == "features" else "label_set"
    with reading(path, cfg.warehouse.lock_timeout / 1e9) as con:
        if not feature_tables.table_exists(con, args.table):
            raise UserError(f"no {args.table} in {path} yet (run python -m flows.feature_build)")
        venue, symbol = reader.pick_pair(
            con, args.venue, args.symbol, (cfg.instrument.venue, cfg.instrument.venue_symbol)
        )
        fs, ls = feature_tables.ids(cfg, venue)
        wanted = args.set or (fs if args.table == "features" else ls)
        sets = [r[0] for r in con.execute(f"SELECT DISTINCT {set_col} FROM {args.table} ORDER BY 1").fetchall()]
        if wanted not in sets:
            raise UserError(f"--set {wanted}: not in the warehouse (stored: {', '.join(sets) or 'none'})")
        spec = feature_tables.features_spec() if args.table == "features" else feature_tables.labels_spec(cfg)
        skip = {"venue", "symbol", set_col}
        cols = ", ".join(c.name for c in spec.columns if c.name not in skip)
        q = reader.quote
        where = f"venue = '{q(venue)}' AND symbol = '{q(symbol)}' AND {set_col} = '{q(wanted)}'"
        if start is not None:
            where += f" AND ts_ns >= {int(start)}"
        if end is not None:
            where += f" AND ts_ns <= {int(end)}"
        rel = con.sql(f"SELECT {cols} FROM {args.table} WHERE {where} ORDER BY ts_ns")
        n = _write(con, rel, args.format, out)
    return f"wrote {n:,} rows ({venue}/{symbol}, {args.table} set {wanted}) to {out}"


def retain(cfg: AppConfig, dry_run: bool, compact: bool, out: TextIO | None = None) -> None:
    """Move old rows to the archive (or, dry, say what would move)."""

    def p(*parts: object) -> None:
        print(*parts, file=out or sys.stdout, flush=True)

    rc = cfg.warehouse.retention
    p(f"retention of {cfg.resolve(cfg.warehouse.path)} into {cfg.resolve(rc.archive)}")
    if dry_run:
        plan = retention.plan(cfg)
    else:
        plan, moved = retention.run(cfg, compact=compact or None, on_progress=lambda line: p(f"  {line}"))
    cut = plan.cutoffs
    p(f"  raw messages: {_cut(cut.raw_ns, rc.raw)}")
    p(f"  book rows: {_cut(cut.book_ns, rc.book)}; {cut.book_note}")
    if dry_run:
        per_day: dict[tuple[str, str], list[retention.Hour]] = {}
        for h in plan.hours:
            per_day.setdefault((h.table, h.day), []).append(h)
        if not per_day:
            p("  nothing to move (dry run)")
        for (table, day), hours in per_day.items():
            rows, size = sum(h.rows for h in hours), sum(h.data_bytes for h in hours)
            p(f"  would move {table:<13} {day}: {len(hours):>2} h, {rows:>12,} rows, {_mb(size)} uncompressed")
        p("  dry run: nothing exported, nothing deleted")
        return
    rows, files = sum(moved.rows.values()), sum(moved.parquet_bytes.values())
    if not rows:
        p("  nothing to move")
    else:
        p(f"  moved {rows:,} rows in {len(plan.hours)} hour files ({_mb(files)} of Parquet), each checked first")
    how = "compacted: copied to a fresh file" if moved.compacted else "checkpointed"
    p(
        f"  file {_mb(moved.file_before)} -> {_mb(moved.file_after)} ({how}); "
        f"{_mb(moved.free_after)} in free blocks that new data reuses"
    )


def _cut(ns: int | None, keep: int | None) -> str:
    if keep is None:
        return "kept in DuckDB (no age set)"
    if ns is None:
        return f"kept {format_duration(keep)}: nothing to move"
    return f"kept {format_duration(keep)}: rows before {format_ns(ns)} move to Parquet"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m warehouse", description="Inspect and export the L2 warehouse.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="venues, symbols, time ranges, row counts, gaps, size on disk")
    add_config_argument(s)
    e = sub.add_parser(
        "export",
        help="write snapshots, features or labels to CSV or Parquet",
        description="snapshots: ts_exchange_ns, ts_local_ns, bid_px_1..N, bid_qty_1..N, "
        "ask_px_1..N, ask_qty_1..N (with --every, ts_sample_ns first). features: ts_ns, ts_update_ns "
        "and one column per feature (python -m features catalog). labels: ts_ns, mid, ret_<h>, dir_<h>, tb_*.",
    )
    e.add_argument("--table", required=True, help="table to export: snapshots, features or labels")
    e.add_argument("--set", help="features / labels: the set id (default: the one of the current config)")
    e.add_argument("--levels", type=int, help="levels per side (default: all stored)")
    e.add_argument("--every", help="sample the book as of every interval (e.g. 1s, 250ms)")
    e.add_argument("--start", help="first time (ISO 8601 UTC, or ns)")
    e.add_argument("--end", help="last time (ISO 8601 UTC, or ns)")
    e.add_argument("--venue", help="venue (default: the only one stored, else the configured one)")
    e.add_argument("--symbol", help="venue symbol, e.g. BTCUSDT")
    e.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    e.add_argument("--out", required=True, metavar="PATH")
    add_config_argument(e)
    r = sub.add_parser(
        "retain",
        help="move raw (and old book) rows to Parquet files by day, then free their space",
        description="Applies warehouse.retention: raw messages older than `raw` and book rows older than "
        "`book` (never those the next feature or label build of this config reads) are written to "
        "<archive>/<table>/venue=V/symbol=S/date=YYYY-MM-DD/part-HH.parquet (a folder, or s3://bucket/prefix "
        "with credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), read back and checked, then deleted "
        "from the DuckDB file. Ages count back from the newest stored row. Safe to re-run after a crash.",
    )
    r.add_argument("--dry-run", action="store_true", help="print what would move, per table and day; change nothing")
    r.add_argument(
        "--compact",
        action="store_true",
        help="afterwards copy the database to a fresh file to give the disk back (holds the file for the copy)",
    )
    add_config_argument(r)
    sc = sub.add_parser("schema", help="print the schema as Markdown")
    add_config_argument(sc)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.command == "show":
        show(cfg)
    elif args.command == "export":
        print(export(cfg, args))
    elif args.command == "retain":
        retain(cfg, args.dry_run, args.compact)
    else:
        print(describe(cfg.warehouse.snapshot_levels))
    return 0


if __name__ == "__main__":
    run_main(main)
