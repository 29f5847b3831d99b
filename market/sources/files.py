"""Recorded files as a source: Bybit archive lines, and ``<local ts> <json>`` recordings.

Formats, told apart by the first line:
- ``<local_receive_ts> {json}``: the recorder format of ../shared/data (Binance USD-M combined
  streams, ns or us stamps) and of this project's own Bybit recordings;
- ``{json}``: Bybit's historical order-book archive lines (same shape as the WebSocket messages,
  no local receive time: their push time ``ts`` stands in for it).
Files may be plain, ``.gz`` or ``.zip`` (first member). Several files are one stream, in order.
"""

from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import orjson

from core.errors import DataError, UserError
from market.events import RawMessage
from market.sources.base import Note, Progress
from market.venues import BINANCE_USDM, BYBIT, Venue
from market.venues.binance import local_ts_to_ns

_PREFIXED = re.compile(r"^(\d{13,20}) (\{.*)$")
_BYBIT_TS = re.compile(r'"ts":(\d+)')
_BLOCK = 1 << 22  # decompressed bytes read at once


@dataclass(frozen=True)
class FileFormat:
    venue: Venue
    prefixed: bool  # lines carry a local receive time


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
    """Look at the first non-empty line to decide the venue and line format."""
    first = b""
    stream, raw = _open_binary(path)
    try:
        with stream:
            for line in stream:
                if line.strip():
                    first = line.strip()
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
        raise UserError(f"{path}: unknown format (expected JSON lines, optionally prefixed by a timestamp)")
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

    def __init__(self, paths: list[Path], batch_lines: int = 20_000, symbol: str = "BTCUSDT") -> None:
        self.paths = paths
        self.batch_lines = batch_lines
        formats = [detect_format(p) for p in paths]
        venues = {f.venue.name for f in formats}
        if len(venues) > 1:
            raise UserError(f"the files mix venues ({', '.join(sorted(venues))}); import them separately")
        self.formats = formats
        self.venue = formats[0].venue
        self.symbol = symbol
        self.tick_size = self.venue.tick_size
        self._total = float(sum(p.stat().st_size for p in paths))
        self._done_before = 0.0
        self._raw: IO[bytes] | None = None
        self._stopped = False
        self.lines = 0

    async def start(self) -> None:
        return None

    def _chunks(self) -> Iterator[tuple[Path, int, list[str]]]:
        """(path, number of the first line, lines) in blocks of whole lines, decoded at once."""
        for path in self.paths:
            stream, raw = _open_binary(path)
            self._raw = raw
            line_no = 1
            try:
                with stream:
                    rest = b""
                    while True:
                        block = stream.read(_BLOCK)
                        if not block:
                            break
                        block = rest + block
                        cut = block.rfind(b"\n") + 1
                        if cut == 0:
                            rest = block
                            continue
                        rest = block[cut:]
                        lines = block[:cut].decode("utf-8").split("\n")[:-1]
                        yield path, line_no, lines
                        line_no += len(lines)
                    if rest:
                        yield path, line_no, [rest.decode("utf-8")]
            except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
                raise DataError(
                    f"{path}: corrupt after line {self.lines} ({exc.__class__.__name__}: {exc}); "
                    "rows from before that point are stored, nothing stored earlier was touched"
                ) from None
            finally:
                self._done_before += path.stat().st_size
                self._raw = None
                raw.close()

    def _messages(self, fmt: FileFormat, path: Path, first: int, lines: list[str]) -> list[RawMessage]:
        venue = self.venue.name
        if fmt.prefixed:
            out: list[RawMessage] = []
            append = out.append
            for n, line in enumerate(lines, first):
                ts, sep, body = line.partition(" ")
                if not sep or not ts.isdigit():
                    if not line.strip():
                        continue
                    raise DataError(f"{path}:{n}: expected '<timestamp> <json>'")
                append(RawMessage(venue, "", local_ts_to_ns(int(ts)), body.rstrip("\r")))
            return out
        msgs = []
        for line in lines:
            text = line.rstrip("\r")
            if not text:
                continue
            m = _BYBIT_TS.search(text, 0, 400)
            # archive lines carry no receive time; a line without ts reaches the parser and is rejected
            msgs.append(RawMessage(venue, "", int(m.group(1)) * 1_000_000 if m else 0, text))
        return msgs

    async def batches(self) -> AsyncIterator[list[RawMessage]]:
        batch: list[RawMessage] = []
        fmt_by_path = dict(zip(self.paths, self.formats, strict=True))
        for path, first, lines in self._chunks():
            msgs = self._messages(fmt_by_path[path], path, first, lines)
            self.lines += len(msgs)
            batch.extend(msgs)
            while len(batch) >= self.batch_lines:
                yield batch[: self.batch_lines]
                batch = batch[self.batch_lines :]
                if self._stopped:
                    return
        if batch:
            yield batch

    def request_resync(self, reason: str) -> None:
        # A file cannot be asked for a new snapshot: the book stays invalid until the next one.
        return None

    def take_notes(self) -> list[Note]:
        return []

    def progress(self) -> Progress:
        current = float(self._raw.tell()) if self._raw is not None and not self._raw.closed else 0.0
        return Progress(min(self._done_before + current, self._total), self._total, "bytes")

    def stop(self) -> None:
        self._stopped = True

    async def aclose(self) -> None:
        return None
