"""A durable, append-only spool of pending rows: the writer's own write-ahead log.

Every flush appends the new rows to the spool and fsyncs it before trying the warehouse, so data
is durable within one flush interval even while readers hold the DuckDB file. After rows reach
the warehouse their segment files are deleted; on start-up the ingest commits whatever is left
(deduplicated, so a crash between the two steps duplicates nothing).

Frame: b"L2SP" | u16 name length | name | u64 payload length | u32 crc32 | Arrow IPC stream.
A torn last frame (power loss, SIGKILL mid-write) fails its length or CRC check and is dropped.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)

MAGIC = b"L2SP"
_HEAD = struct.Struct("<4sH")
_BODY = struct.Struct("<QI")


def _encode(name: str, table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    payload = bytes(sink.getvalue().to_pybytes())
    raw_name = name.encode()
    return _HEAD.pack(MAGIC, len(raw_name)) + raw_name + _BODY.pack(len(payload), zlib.crc32(payload)) + payload


def read_segment(path: Path) -> Iterator[tuple[str, pa.Table]]:
    """Yield (table name, rows) from one segment, stopping at a torn or corrupt frame."""
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        if pos + _HEAD.size > len(data):
            break
        magic, name_len = _HEAD.unpack_from(data, pos)
        if magic != MAGIC:
            break
        p = pos + _HEAD.size
        name = data[p : p + name_len].decode(errors="replace")
        p += name_len
        if p + _BODY.size > len(data):
            break
        length, crc = _BODY.unpack_from(data, p)
        p += _BODY.size
        payload = data[p : p + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break
        yield name, pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
        pos = p + length
    if pos < len(data):
        log.warning("%s: dropped a torn frame at byte %d (data after the last fsync)", path, pos)


class Spool:
    """Segment files in one directory; one segment per flush, deleted once committed."""

    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.name = name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._counter = max((self._seq(p) for p in self.segments()), default=0)

    @staticmethod
    def _seq(path: Path) -> int:
        return int(path.stem.rsplit("-", 1)[1])

    def segments(self) -> list[Path]:
        """Segment files not yet committed, oldest first."""
        return sorted(self.dir.glob(f"{self.name}-*.spool"), key=self._seq)

    def append(self, tables: dict[str, pa.Table]) -> Path | None:
        """Write the non-empty tables as one new segment and fsync it."""
        frames = [_encode(n, t) for n, t in tables.items() if t.num_rows]
        if not frames:
            return None
        self._counter += 1
        path = self.dir / f"{self.name}-{self._counter:012d}.spool"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"".join(frames))
            os.fsync(fd)
        finally:
            os.close(fd)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return path

    def read(self, segments: list[Path]) -> dict[str, list[pa.Table]]:
        out: dict[str, list[pa.Table]] = {}
        for seg in segments:
            for name, table in read_segment(seg):
                out.setdefault(name, []).append(table)
        return out

    def remove(self, segments: list[Path]) -> None:
        for seg in segments:
            seg.unlink(missing_ok=True)
