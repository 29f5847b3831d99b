"""Recorded files as a source: JSON lines (recordings, Bybit's order-book archives) and CSV archives.

Formats, told apart by the first line:
- ``<local_receive_ts> {json}``: the recorder format of ../shared/data (Binance USD-M combined
  streams, ns or us stamps) and of this project's own Bybit recordings;
- ``{json}``: Bybit's historical order-book archive lines (same shape as the WebSocket messages,
  no local receive time: their push time ``ts`` stands in for it);
- a CSV header: Bybit's trade archives and Tardis.dev's incremental_book_L2 and trades
  (market/sources/columns.py decodes them).
Files may be plain, ``.gz`` or ``.zip`` (first member).

Files of one kind are one chain, read in the order given (a day after another). JSON-line files
alone are one stream in that order, each file one segment of it (a batch never spans two files:
the ingest estimates the recording clock's offset per file, warehouse.clocks). Files of several
kinds (a day's ob500 zip and its trade csv.gz) are merged into one stream by exchange time,
window by window (``_merged``); their segment is the names of the files being read together.
Data without a local receive time (archives) says so (``local_time``): replays read it at the
configured ``ingest.archive_latency``.
"""

from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import orjson

from core.config import InstrumentConfig
from core.errors import DataError, UserError
from market.events import RawBatch
from market.parsing import Decoded
from market.sources import columns, lines_fast
from market.sources.base import Note, Progress
from market.sources.columns import Sniffed
from market.venues import BINANCE_USDM, BYBIT, Venue, tick_size
from market.venues.binance import local_ts_to_ns

Chunk = tuple[Path, int, int, bytes]  # (file, number of its first line, number of lines, whole lines)
_PREFIXED = re.compile(r"^(\d{13,20}) (\{.*)$")
_BYBIT_TS = re.compile(r'"ts":(\d+)')
_BLOCK = 1 << 22  # decompressed bytes read at once
_GZ_IN = 1 << 16  # compressed bytes decompressed at once
_GZ_RETRY = 256  # after damage, the compressed bytes before it are decompressed again this many at a time


@dataclass(frozen=True)
class FileFormat:
    venue: Venue
    prefixed: bool  # lines carry a local receive time
    csv: Sniffed | None = None  # a CSV archive (market/sources/columns.py)

    @property
    def kind(self) -> str:
        """Files of one kind are one chain, read in the order given; chains merge by exchange time."""
        return self.csv.format.kind if self.csv is not None else "lines"

    @property
    def local_time(self) -> bool:
        """Whether the file records when each message was received (archives do not)."""
        return self.csv.format.local_time if self.csv is not None else self.prefixed


def _utf8(block: bytes) -> bytes:
    """The block, once checked to be valid UTF-8 (UnicodeDecodeError otherwise)."""
    if not block.isascii():
        block.decode("utf-8")
    return block


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(stream of the decompressed bytes, raw file for progress)."""
    raw = path.open("rb")
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw)), raw
    if path.suffix == ".zip":
        try:
            zf = zipfile.ZipFile(raw)
            names = zf.namelist()
            if not names:
                raise DataError(f"{path}: the zip archive is empty")
            return zf.open(names[0]), raw
        except zipfile.BadZipFile:
            raw.close()
            raise DataError(f"{path}: not a valid zip archive") from None
    return raw, raw


def _gunzip(raw: IO[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file (every member, in order), piece by piece. At damage,
    every byte that decompresses before it has been yielded first (up to ``_GZ_RETRY`` compressed
    bytes before a corruption); then EOFError (the file ends inside a member: truncated) or
    zlib.error (corrupt data). ``gzip.GzipFile.read`` loses the whole read in either case."""
    d, fed = zlib.decompressobj(wbits=31), False
    while chunk := raw.read(_GZ_IN):
        while chunk:
            before = d.copy()
            try:
                out = d.decompress(chunk)
            except zlib.error:
                yield from _up_to_damage(before, chunk)
                raise
            fed = True
            if out:
                yield out
            if not d.eof:
                break
            chunk, d, fed = d.unused_data, zlib.decompressobj(wbits=31), False  # the next member
    if fed:
        raise EOFError("the compressed file ends inside a member (truncated)")


def _up_to_damage(d: Any, chunk: bytes) -> Iterator[bytes]:
    """What ``chunk`` decompresses to before the point where it is corrupt (``d``: the decompressor
    before it), ``_GZ_RETRY`` compressed bytes at a time."""
    for i in range(0, len(chunk), _GZ_RETRY):
        try:
            out = d.decompress(chunk[i : i + _GZ_RETRY])
        except zlib.error:
            return
        if out:
            yield out
        if d.eof:
            return


def _pieces(path: Path) -> tuple[Iterator[bytes], IO[bytes]]:
    """(the decompressed bytes of ``path``, piece by piece; the raw file, for progress)."""
    if path.suffix == ".gz":
        gz = path.open("rb")
        return _gunzip(gz), gz
    stream, raw = _open_binary(path)

    def read() -> Iterator[bytes]:
        with stream:
            while block := stream.read(_BLOCK):
                yield block

    return read(), raw


def check_paths(paths: list[str]) -> list[Path]:
    """Resolve input paths, refusing missing, unreadable or repeated ones (one line each)."""
    if not paths:
        raise UserError("--source file needs at least one --path")
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UserError(f"{p}: no such file")
        if not path.is_file():
            raise UserError(f"{p}: not a file")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise UserError(f"{p}: cannot read: {exc.strerror}") from None
        if path.resolve() in {q.resolve() for q in out}:
            raise UserError(f"{p}: listed twice")
        out.append(path)
    return out


def detect_format(path: Path) -> FileFormat:
    """Look at the first non-empty line (and a CSV file's second) to decide the venue and format."""
    first, second = b"", b""
    stream, raw = _open_binary(path)
    try:
        with stream:
            for line in stream:
                if line.strip():
                    if first:
                        second = line.strip()
                        break
                    first = line.strip()
                    if first.startswith(b"{") or _PREFIXED.match(first.decode("utf-8", errors="replace")):
                        break
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or unreadable ({exc.__class__.__name__}: {exc})") from None
    finally:
        raw.close()
    if not first:
        raise DataError(f"{path}: the file is empty")
    text = first.decode("utf-8", errors="replace")
    m = _PREFIXED.match(text)
    body = m.group(2) if m else text
    if not body.startswith("{"):
        sniffed = columns.sniff(path, text, second.decode("utf-8", errors="replace"))
        if sniffed is not None:
            return FileFormat(sniffed.venue, prefixed=False, csv=sniffed)
        raise UserError(
            f"{path}: unknown format (expected JSON lines, optionally prefixed by a timestamp, or a Bybit or "
            "Tardis CSV archive with its header)"
        )
    try:
        head = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DataError(f"{path}: the first line is not valid JSON") from None
    if isinstance(head, dict) and ("stream" in head or "lastUpdateId" in head):
        return FileFormat(BINANCE_USDM, prefixed=bool(m))
    if isinstance(head, dict) and ("topic" in head or "op" in head):
        return FileFormat(BYBIT, prefixed=bool(m))
    raise UserError(f"{path}: neither Bybit nor Binance messages")


class FileSource:
    """Replays recorded files as fast as they can be read."""

    name = "file"

    def __init__(
        self,
        paths: list[Path],
        batch_lines: int = 20_000,
        symbol: str = "BTCUSDT",
        instrument: InstrumentConfig | None = None,
    ) -> None:
        """``instrument`` (the config's): its symbol, and its tick for files of its own venue (any
        linear perpetual imports by configuration alone); without it BTCUSDT and the venue's tick."""
        self.paths = paths
        self.batch_lines = batch_lines
        formats = [detect_format(p) for p in paths]
        venues = {f.venue.name for f in formats}
        if len(venues) > 1:
            raise UserError(f"the files mix venues ({', '.join(sorted(venues))}); import them separately")
        self.formats = formats
        self.venue = formats[0].venue
        self.chains: dict[str, list[Path]] = {}  # kind -> its files, in the order given
        for path, fmt in zip(paths, formats, strict=True):
            self.chains.setdefault(fmt.kind, []).append(path)
        self.merged = list(self.chains) != ["lines"]  # CSV archives, or several kinds: merged by time
        self.local_time = all(f.local_time for f in formats)  # archives have no local receive time
        self.symbol = symbol if instrument is None else instrument.venue_symbol
        self.tick_size = self.venue.tick_size if instrument is None else tick_size(instrument, self.venue.name)
        self._total = float(sum(p.stat().st_size for p in paths))
        self._done_before = 0.0
        self._open: dict[Path, IO[bytes]] = {}  # the files being read (progress)
        self._stopped = False
        self.lines = 0
        self.segment = paths[0].name if paths else ""

    async def start(self) -> None:
        return None

    def _chunks(self, paths: list[Path]) -> Iterator[Chunk]:
        """(path, number of the first line, number of lines, block of whole lines checked to be UTF-8)."""
        for path in paths:
            pieces, raw = _pieces(path)
            self._open[path] = raw
            line_no, held, size = 1, list[bytes](), 0  # held: the bytes read and not yet passed on
            try:
                for piece in pieces:
                    held.append(piece)
                    size += len(piece)
                    if size >= _BLOCK:
                        line_no, rest = yield from self._whole_lines(path, line_no, b"".join(held))
                        held, size = [rest], len(rest)
                line_no, rest = yield from self._whole_lines(path, line_no, b"".join(held))
                held = [rest]
                if rest:  # a last line without its newline
                    yield path, line_no, 1, _utf8(rest)
            except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
                readable = b"".join(held)
                try:
                    readable.decode("utf-8")
                except UnicodeDecodeError as bad:
                    readable = readable[: bad.start]
                kept_to, _ = yield from self._whole_lines(path, line_no, readable)  # the whole lines before it
                raise DataError(
                    f"{path}: corrupt after line {kept_to - 1} ({exc.__class__.__name__}: {exc}); "
                    f"the {self.lines:,} messages before it are stored, nothing stored earlier was touched"
                ) from None
            finally:
                self._done_before += path.stat().st_size
                self._open.pop(path, None)
                raw.close()

    def _whole_lines(self, path: Path, line_no: int, data: bytes) -> Generator[Chunk, None, tuple[int, bytes]]:
        """Yield the complete lines of ``data`` (whose first line is number ``line_no``) as one block;
        returns (the number of the next line, the incomplete rest)."""
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            return line_no, data
        lines = data.count(b"\n", 0, cut)
        yield path, line_no, lines, _utf8(data[:cut])
        return line_no + lines, data[cut:]

    def _batch(self, fmt: FileFormat, path: Path, first: int, lines: int, block: bytes) -> RawBatch:
        """The messages of a block of lines (the numbers of its lines start at ``first``)."""
        if fmt.prefixed:
            buf = np.frombuffer(block, np.uint8)
            out = np.empty(len(block), np.uint8)
            offsets = np.empty(lines + 1, np.int64)
            ts = np.empty(lines, np.int64)
            n, status, bad = lines_fast.split_prefixed(buf, out, offsets, ts)
            if status == lines_fast.BAD_LINE:
                raise DataError(f"{path}:{first + bad}: expected '<timestamp> <json>'")
            if status == lines_fast.OK:
                return RawBatch(self.venue.name, out[: offsets[n]].tobytes(), offsets[: n + 1].copy(), ts[:n].copy())
        return self._batch_by_line(fmt, path, first, block.decode("utf-8"))

    def _batch_by_line(self, fmt: FileFormat, path: Path, first: int, text: str) -> RawBatch:
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        payloads: list[str] = []
        stamps: list[int] = []
        if fmt.prefixed:
            for n, line in enumerate(lines, first):
                ts, sep, body = line.partition(" ")
                if not sep or not ts.isdigit():
                    if not line.strip():
                        continue
                    raise DataError(f"{path}:{n}: expected '<timestamp> <json>'")
                stamps.append(local_ts_to_ns(int(ts)))
                payloads.append(body.rstrip("\r"))
        else:
            for line in lines:
                body = line.rstrip("\r")
                if not body:
                    continue
                m = _BYBIT_TS.search(body, 0, 400)
                # archive lines carry no receive time; a line without ts reaches the parser and is rejected
                stamps.append(int(m.group(1)) * 1_000_000 if m else 0)
                payloads.append(body)
        return RawBatch.from_texts(self.venue.name, payloads, np.array(stamps, np.int64))

    def _parts(self, paths: list[Path]) -> Iterator[tuple[Path, RawBatch]]:
        """(file, the messages of one block of its lines), in order."""
        fmt_by_path = dict(zip(self.paths, self.formats, strict=True))
        for path, first, lines, block in self._chunks(paths):
            yield path, self._batch(fmt_by_path[path], path, first, lines, block)

    def _chain(self, kind: str, paths: list[Path]) -> Iterator[tuple[Path, RawBatch | Decoded, np.ndarray]]:
        """(file, a part of it, the merge key of each of its messages: exchange time, never
        decreasing) for one chain of files of one kind."""
        if kind == "lines":  # JSON lines: archive lines carry their push time, recordings their receive time
            key = 0
            for path, batch in self._parts(paths):
                keys = columns.running_max(key, batch.ts_local)
                key = int(keys[-1]) if keys.size else key
                yield path, batch, keys
            return
        sniffed = next(f.csv for f in self.formats if f.kind == kind)
        assert sniffed is not None
        decoder = columns.CsvDecoder(sniffed, self.symbol, self.tick_size)
        current: Path | None = None
        for path, first, _, block in self._chunks(paths):
            if current is not None and path != current and (done := decoder.flush(current)) is not None:
                yield current, done, done.keys
            current = path
            if (part := decoder.block(path, first, block)) is not None:
                yield path, part, part.keys
        if current is not None and (done := decoder.flush(current)) is not None:
            yield current, done, done.keys

    def _merged(self) -> Iterator[RawBatch | Decoded]:
        """Every chain's messages as one stream by exchange time: what any chain holds up to the
        earliest last key among the chains still reading (the horizon) is passed on, chain by chain;
        the chain that set the horizon is then empty and reads on. At damaged data, what every chain
        has read is passed on first, then the DataError raised."""
        chains = [self._chain(kind, paths) for kind, paths in self.chains.items()]
        held: list[tuple[Path, RawBatch | Decoded, np.ndarray] | None] = [None] * len(chains)  # a part per chain
        done = [False] * len(chains)
        names = [paths[0].name for paths in self.chains.values()]
        while True:
            for i, chain in enumerate(chains):
                while not done[i] and held[i] is None:
                    try:
                        item = next(chain, None)
                    except DataError:
                        yield from (h[1] for h in held if h is not None)
                        raise
                    if item is None:
                        done[i] = True
                    elif len(item[1]):
                        held[i] = item
            if all(h is None for h in held):
                return
            reading = [int(h[2][-1]) for h, d in zip(held, done, strict=True) if h is not None and not d]
            horizon = min(reading) if reading else None
            for i, h in enumerate(held):
                if h is None:
                    continue
                path, part, keys = h
                cut = len(keys) if horizon is None else int(np.searchsorted(keys, horizon, "right"))
                if cut == 0:
                    continue
                held[i] = None if cut == len(keys) else (path, part.slice(cut, len(keys)), keys[cut:])
                names[i] = path.name
                self.segment = "+".join(names)
                yield part if cut == len(keys) else part.slice(0, cut)
                if self._stopped:
                    return

    async def batches(self) -> AsyncIterator[RawBatch | Decoded]:
        """Batches of ``batch_lines`` messages; a file's last batch may be shorter: a batch never spans two
        files, each file being one segment (``segment``: its name) for the recording-clock estimate.
        At damaged data, the messages read before it are passed on first, then the DataError raised."""
        if self.merged:
            for part in self._merged():
                self.lines += len(part)
                yield part
            return
        async for batch in self.raw_batches():
            yield batch

    async def raw_batches(self) -> AsyncIterator[RawBatch]:
        """The messages of JSON-line files as raw messages (what the stand-in serves and the
        simulator calibrates on); CSV archives are decoded, not raw messages: refused."""
        if self.merged:
            names = ", ".join(p.name for kind, paths in self.chains.items() if kind != "lines" for p in paths)
            raise UserError(f"{names}: CSV archives are imported (flows.ingest --source file), not served as messages")
        pending: list[RawBatch] = []
        count = 0
        current = self.paths[0]
        parts = self._parts(self.paths)
        while True:
            try:
                item = next(parts, None)
            except DataError:
                if count:
                    yield RawBatch.concat(pending)
                raise
            if item is None:
                break
            path, part = item
            if path != current and count:
                yield RawBatch.concat(pending)
                pending, count = [], 0
                if self._stopped:
                    return
            current, self.segment = path, path.name
            self.lines += len(part)
            pending.append(part)
            count += len(part)
            while count >= self.batch_lines:
                merged = RawBatch.concat(pending)
                yield merged.slice(0, self.batch_lines)
                rest = merged.slice(self.batch_lines, len(merged))
                pending, count = [rest], len(rest)
                if self._stopped:
                    return
        if count:
            yield RawBatch.concat(pending)

    def request_resync(self, reason: str) -> None:
        # A file cannot be asked for a new snapshot: the book stays invalid until the next one.
        return None

    def take_notes(self) -> list[Note]:
        return []

    def progress(self) -> Progress:
        current = float(sum(raw.tell() for raw in list(self._open.values()) if not raw.closed))
        return Progress(min(self._done_before + current, self._total), self._total, "bytes")

    def stop(self) -> None:
        self._stopped = True

    async def aclose(self) -> None:
        return None
