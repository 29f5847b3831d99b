"""The lake: history that retention moved out of the DuckDB file, read back by the same queries.

``python -m warehouse retain`` (warehouse/retention.py) moves old raw messages and book rows to
Parquet files (zstd), one per table, pair and hour of data, partitioned by venue, symbol and day::

    <archive>/<table>/venue=<venue>/symbol=<symbol>/date=YYYY-MM-DD/part-HH.parquet
    <archive>/raw_messages/venue=<venue>/date=YYYY-MM-DD/part-HH.parquet   (raw messages: no symbol)

Each file holds every column of its table (venue and symbol included: a file read alone says what
it is; read them with ``hive_partitioning = false``). The file's rows leave DuckDB and its line in
``lake_parts`` (this module's manifest, a table in the DuckDB file) is written in ONE transaction,
after the file is complete, checked and renamed into place. Readers see the lake through the
manifest only, so a reader never sees a half-written file, a file whose rows are still in DuckDB
(a crash between the rename and the commit), or the same hour twice: every row is in exactly one
of the two places it reads.

A reader asks for the lake by the span of exchange time it reads (``reading(path, history=(lo,
hi))``, warehouse/db.py): for each table with manifest lines overlapping that span, a temporary
view of the table's name shadows it for that connection: the DuckDB rows UNION ALL the files'
rows (cast to the table's own column types), so every query written against the DuckDB table reads
both unchanged. Readers that never ask (the live runner, the dashboard, the ingest) pay nothing.

Paths in the manifest are relative to the warehouse file's folder when the archive is below it (a
moved or copied project keeps its lake), absolute otherwise, or ``s3://bucket/key`` URLs when the
archive is on S3 (warehouse/lakestore.py). Local files are read by ``read_parquet``; objects are
scanned by pyarrow's S3 filesystem as one Arrow dataset per store, registered on the connection
(DuckDB's own S3 reader is an extension it downloads at run time). The endpoint and region of each
bucket are kept beside the manifest (``lake_s3``), written by retention in the transaction that
lists its first object there, so a reader needs only the credentials, from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from core.errors import DataError

PARTS = "lake_parts"
S3 = "lake_s3"
TABLES = ("raw_messages", "book_updates", "trades", "snapshots", "snapshots_1s")
_LO, _HI = -(2**63), 2**63 - 1

DDL = f"""CREATE TABLE IF NOT EXISTS {PARTS} (
    table_name VARCHAR NOT NULL,  -- the DuckDB table the rows came from
    venue VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,      -- '' for raw_messages
    hour_ns BIGINT NOT NULL,      -- the hour of data (UTC) the file holds, on the table's time column
    first_ns BIGINT NOT NULL,     -- its first and last time (the table's time column)
    last_ns BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,        -- the file's size
    path VARCHAR NOT NULL,        -- relative to the warehouse file's folder, or absolute
    PRIMARY KEY (table_name, venue, symbol, hour_ns)
)"""


S3_DDL = f"""CREATE TABLE IF NOT EXISTS {S3} (
    bucket VARCHAR PRIMARY KEY,   -- a bucket manifest paths name (s3://bucket/...)
    endpoint VARCHAR NOT NULL,    -- http(s)://host:port of an S3-compatible store; '' for AWS
    region VARCHAR NOT NULL
)"""


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def note_s3(con: duckdb.DuckDBPyConnection, bucket: str, endpoint: str, region: str) -> None:
    """Where a bucket is (inside the caller's transaction): readers sign their reads with it."""
    con.execute(S3_DDL)
    con.execute(f"INSERT OR REPLACE INTO {S3} VALUES (?, ?, ?)", [bucket, endpoint, region])


def is_url(stored: str) -> bool:
    return stored.startswith("s3://")


def exists(con: duckdb.DuckDBPyConnection) -> bool:
    """Has this warehouse a lake? (Asked by a query on the manifest: a catalog scan took 7 ms.)"""
    try:
        con.execute(f"SELECT 1 FROM {PARTS} LIMIT 0").fetchall()
    except duckdb.CatalogException:
        return False
    return True


def stored_path(root: Path, file: Path) -> str:
    """How the manifest names ``file``: relative to ``root`` (the warehouse's folder) when below it."""
    try:
        return file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(file.resolve())


def resolve(root: Path, stored: str) -> str:
    return stored if is_url(stored) or os.path.isabs(stored) else str(root / stored)


def _q(text: str) -> str:
    return text.replace("'", "''")


def attach(con: duckdb.DuckDBPyConnection, root: Path, lo: int | None, hi: int | None) -> dict[str, int]:
    """Shadow each table with lake files overlapping [lo, hi) by a view of both; {table: files}."""
    if not exists(con):
        return {}
    parts = con.execute(
        f"SELECT table_name, list(path ORDER BY hour_ns, venue, symbol), list(bytes ORDER BY hour_ns, venue, symbol) "
        f"FROM {PARTS} WHERE last_ns >= ? AND first_ns < ? GROUP BY table_name ORDER BY table_name",
        [_LO if lo is None else int(lo), _HI if hi is None else int(hi)],
    ).fetchall()
    if not parts:
        return {}
    row = con.execute("SELECT current_database()").fetchone()
    db = str(row[0]) if row else ""
    out: dict[str, int] = {}
    for table, paths, sizes in parts:
        try:
            info = con.execute(f'PRAGMA table_info(\'"{db}".main."{table}"\')').fetchall()
        except duckdb.CatalogException:  # a table this file no longer has: nothing to shadow
            continue
        cols = [(str(r[1]), str(r[2])) for r in info]
        found = [resolve(root, p) for p in paths]
        missing = [f for f in found if not is_url(f) and not os.path.exists(f)]
        if missing:  # never a silent hole in the history: the reader stops, saying which file
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DataError(f"{missing[0]}{more}: listed in the lake's manifest ({table}) but missing; restore it")
        names = ", ".join(f'"{c}"' for c, _ in cols)
        cast = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cols)
        local = [p for p in paths if not is_url(p)]
        sources = []
        if local:
            files = ", ".join(f"'{_q(resolve(root, p))}'" for p in local)  # each checked present above
            sources.append(f"read_parquet([{files}], hive_partitioning = false)")
        remote = [(p, int(n)) for p, n in zip(paths, sizes, strict=True) if is_url(p)]
        if remote:
            sources += _register_s3(con, str(table), remote)
        lake_side = " UNION ALL ".join(f"SELECT {cast} FROM {src}" for src in sources)
        con.execute(
            f'CREATE OR REPLACE TEMP VIEW "{table}" AS SELECT {names} FROM "{db}".main."{table}" UNION ALL {lake_side}'
        )
        out[str(table)] = len(paths)
    return out


def _register_s3(con: duckdb.DuckDBPyConnection, table: str, objects: list[tuple[str, int]]) -> list[str]:
    """Register the objects (s3:// URL, bytes) as Arrow datasets, one per store; their names."""
    import pyarrow.dataset as pads

    from warehouse.lakestore import s3_error, s3_filesystem

    stores = {str(r[0]): (str(r[1]), str(r[2])) for r in con.execute(f"SELECT * FROM {S3}").fetchall()}
    by_store: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for url, size in objects:
        key = url.removeprefix("s3://")
        bucket = key.split("/", 1)[0]
        if bucket not in stores:
            raise DataError(f"{url}: the lake's manifest does not say where bucket {bucket} is ({S3})")
        by_store.setdefault(stores[bucket], []).append((key, size))
    names = []
    fmt = pads.ParquetFileFormat()
    for i, ((endpoint, region), keys) in enumerate(sorted(by_store.items())):
        fs = s3_filesystem(endpoint, region)
        try:
            frags = [fmt.make_fragment(k, filesystem=fs, file_size=n) for k, n in keys]
            schema = frags[0].physical_schema
        except OSError as exc:
            raise s3_error(f"s3://{keys[0][0]}: cannot read the lake", exc) from None
        name = f"lake_s3_{table}_{i}"
        con.register(name, pads.FileSystemDataset(frags, schema, fmt, fs))
        names.append(f'"{name}"')
    return names


@dataclass(frozen=True)
class LakeTable:
    """One table's history in the lake, for one pair."""

    table: str
    venue: str
    symbol: str
    files: int
    rows: int
    bytes: int
    first_ns: int
    last_ns: int
    days: int

    @property
    def bytes_per_row(self) -> float:
        return self.bytes / self.rows if self.rows else 0.0


def tables(con: duckdb.DuckDBPyConnection) -> list[LakeTable]:
    """What the manifest holds, per table and pair (``warehouse show``)."""
    if not exists(con):
        return []
    rows = con.execute(
        f"SELECT table_name, venue, symbol, count(*), sum(rows), sum(bytes), min(first_ns), max(last_ns), "
        f"count(DISTINCT hour_ns // {86_400 * 10**9}) FROM {PARTS} GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    return [LakeTable(str(r[0]), str(r[1]), str(r[2]), *(int(x) for x in r[3:])) for r in rows]


def bounds(con: duckdb.DuckDBPyConnection, table: str, venue: str, symbol: str) -> tuple[int, int] | None:
    """The lake's first and last time of one table and pair, None when it holds none."""
    if not exists(con):
        return None
    row = con.execute(
        f"SELECT min(first_ns), max(last_ns) FROM {PARTS} WHERE table_name = ? AND venue = ? AND symbol = ?",
        [table, venue, symbol],
    ).fetchone()
    return None if row is None or row[0] is None else (int(row[0]), int(row[1]))


def unlisted(con: duckdb.DuckDBPyConnection, root: Path, archive: Path) -> list[Path]:
    """Parquet files under the local ``archive`` that the manifest does not list (readers skip them)."""
    if not archive.is_dir():
        return []
    listed = set()
    if exists(con):
        stored = [str(r[0]) for r in con.execute(f"SELECT path FROM {PARTS}").fetchall()]
        listed = {Path(resolve(root, p)).resolve() for p in stored if not is_url(p)}
    return sorted(f for f in archive.rglob("*.parquet") if f.resolve() not in listed)


def first_after(con: duckdb.DuckDBPyConnection, table: str, venue: str, symbol: str, after: int) -> int | None:
    """The first time of the earliest lake file of ``table`` and the pair that starts at or after
    ``after`` (a reader looking past its span for the next data), None when there is none."""
    if not exists(con):
        return None
    row = con.execute(
        f"SELECT min(first_ns) FROM {PARTS} WHERE table_name = ? AND venue = ? AND symbol = ? AND first_ns >= ?",
        [table, venue, symbol, int(after)],
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])
