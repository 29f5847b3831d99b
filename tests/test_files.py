"""Recorded files as a source: the byte-level line splitter equals the line-by-line reader, batches."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core.errors import DataError
from market.events import RawBatch, RawMessage
from market.sources import files, lines_fast
from market.sources.files import FileSource
from market.venues import BYBIT
from tests.bybit_msgs import book, ms, random_stream, trades

BOOK = book(10, 1_000, [(100.0, 1.0)], [(100.1, 2.0)])


def read_all(src: FileSource) -> list[RawBatch]:
    async def run() -> list[RawBatch]:
        return [b async for b in src.raw_batches()]

    return asyncio.run(run())


def messages(batches: list[RawBatch]) -> list[RawMessage]:
    return [m for b in batches for m in b]


def recording(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", newline="") as f:
        f.write(text)
    return path


def test_raw_batches_hold_the_messages_column_wise() -> None:
    msgs = [
        RawMessage("bybit", "", 1, "abc"),
        RawMessage("bybit", "", 2, "caf\u00e9 \u20ac"),
        RawMessage("bybit", "", 3, ""),
        RawMessage("bybit", "", 4, "x\ud800y"),  # not UTF-8: kept byte for byte
    ]
    batch = RawBatch.of(msgs)
    assert len(batch) == 4 and list(batch) == msgs and RawBatch.of(batch) is batch
    assert batch.payloads() == [m.payload for m in msgs] and batch.payload(1) == msgs[1].payload
    assert list(RawBatch.concat([batch.slice(0, 1), batch.slice(1, 3), batch.slice(3, 4)])) == msgs
    assert batch.slice(0, 3).payload_array().to_pylist() == ["abc", "caf\u00e9 \u20ac", ""]
    ascii_only = RawBatch.of(msgs[:1] + msgs[2:3])
    assert ascii_only.data == b"abc" and ascii_only.offsets.tolist() == [0, 3, 3]
    assert ascii_only.payload_array().equals(pa.array(["abc", ""]))
    empty = RawBatch.of([])
    assert len(empty) == 0 and list(empty) == [] and empty.payload_array().to_pylist() == []


LINES = [
    f"1767571200003000000 {BOOK}\n",
    f"1767571200003001 {BOOK}\r\n",  # a stamp in us, a CRLF line end
    "\n",
    " \t\x0b\x0c\r\x1c\x1f\n",  # whitespace only: skipped
    f"1767571200004000000 {trades(1_000, [('Buy', 100.1, 0.5, 'x')])}\r\r\n",
    "1767571200005000000 \n",  # an empty payload (the parser rejects it)
    "1767571200006000000 not json at all \n",
    "0 {}\n",
]


def split(fast: bool, text: str, first: int = 1) -> RawBatch:
    src = FileSource.__new__(FileSource)
    src.venue = BYBIT
    block = text.encode()
    fmt = files.FileFormat(BYBIT, prefixed=True)
    if fast:
        return src._batch(fmt, Path("f"), first, block.count(b"\n") + (not text.endswith("\n")), block)
    return src._batch_by_line(fmt, Path("f"), first, text)


@pytest.mark.kernels
@pytest.mark.parametrize("tail", ["", "1767571200007000000 {}"])  # the last line of a file may lack "\n"
def test_the_line_splitter_equals_the_line_by_line_reader(tail: str) -> None:
    text = "".join(LINES) + tail
    fast, slow = split(True, text), split(False, text)
    assert list(fast) == list(slow)
    assert fast.ts_local.tolist()[:2] == [1767571200003000000, 1767571200003001000]
    assert fast.payloads()[2].endswith("}") and fast.payloads()[3:5] == ["", "not json at all "]


@pytest.mark.kernels
@pytest.mark.parametrize("bad", ["abc {}", " 1767571200003000000 {}", "1767571200003000000{}", "17675a 1"])
def test_a_line_without_a_stamp_is_an_error_naming_its_line(bad: str) -> None:
    text = "".join(LINES[:3]) + bad + "\n" + LINES[0]
    for fast in (True, False):
        with pytest.raises(DataError, match=r"^f:13: expected '<timestamp> <json>'"):
            split(fast, text, first=10)


@pytest.mark.kernels
@pytest.mark.parametrize(
    "line",
    [
        "\u0661\u0662\u0663 {}",  # digits that are not ASCII: str.isdigit() says yes
        "12\u0663 {}",
        "\u00a0\u2028",  # whitespace that is not ASCII: skipped
        "caf\u00e9",  # not a stamp, not whitespace: an error either way
    ],
)
def test_lines_the_splitter_is_unsure_of_take_the_line_by_line_path(line: str) -> None:
    text = LINES[0] + line + "\n" + LINES[1]
    block = text.encode()
    buf = np.frombuffer(block, np.uint8)
    n, status, at = lines_fast.split_prefixed(
        buf, np.empty(len(block), np.uint8), np.empty(4, np.int64), np.empty(3, np.int64)
    )
    assert (n, status, at) == (1, lines_fast.UNSURE, 1)
    try:
        want = list(split(False, text))
    except DataError as exc:
        with pytest.raises(DataError, match=str(exc)):
            split(True, text)
    else:
        assert list(split(True, text)) == want


@pytest.mark.kernels
@pytest.mark.parametrize("stamp", ["9300000000000000", "99999999999999999999"])
def test_stamps_that_do_not_fit_in_ns_leave_the_block_to_the_line_by_line_path(stamp: str) -> None:
    block = f"{stamp} {{}}\n".encode()
    status = lines_fast.split_prefixed(
        np.frombuffer(block, np.uint8), np.empty(len(block), np.uint8), np.empty(2, np.int64), np.empty(1, np.int64)
    )[1]
    assert status == lines_fast.UNSURE


def test_a_file_is_read_in_blocks_and_cut_into_batches_of_whole_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = random_stream(60, seed=3)
    text = "".join(
        f"{m.ts_local} {m.payload}\n" if k % 7 else f"{m.ts_local} {m.payload}\r\n\n" for k, m in enumerate(msgs)
    )
    path = recording(tmp_path / "rec.gz", text.rstrip("\n"))  # no newline at the very end
    monkeypatch.setattr(files, "_BLOCK", 1000)  # many blocks, lines cut across them
    src = FileSource([path], batch_lines=9)
    batches = read_all(src)
    assert [len(b) for b in batches] == [9] * (len(msgs) // 9) + ([len(msgs) % 9] if len(msgs) % 9 else [])
    assert [(m.ts_local, m.payload) for m in messages(batches)] == [(m.ts_local, m.payload) for m in msgs]
    assert src.lines == len(msgs) and src.progress().done == src.progress().total


def test_an_error_names_the_line_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    msgs = random_stream(40, seed=4)
    lines = [f"{m.ts_local} {m.payload}\n" for m in msgs]
    lines[30] = "garbage\n"
    monkeypatch.setattr(files, "_BLOCK", 700)
    src = FileSource([recording(tmp_path / "bad.gz", "".join(lines))])
    with pytest.raises(DataError, match=r"bad.gz:31: expected"):
        read_all(src)


def test_bybit_archive_lines_take_their_push_time(tmp_path: Path) -> None:
    msgs = random_stream(20, seed=5)
    text = "".join(f"{m.payload}\r\n" for m in msgs) + "\n" + '{"topic":"orderbook.50.BTCUSDT"}\n'
    src = FileSource([recording(tmp_path / "archive.gz", text)])
    got = messages(read_all(src))
    assert [m.payload for m in got] == [m.payload for m in msgs] + ['{"topic":"orderbook.50.BTCUSDT"}']
    assert got[0].ts_local == (ms(1_767_225_600_000) - 3_000_000 + 2_000_000) and got[-1].ts_local == 0


def test_text_that_is_not_utf8_is_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(f"1767571200003000000 {BOOK}\n".encode() + b"1767571200003000001 {\xff}\n")
    with pytest.raises(DataError, match="corrupt after line"):
        read_all(FileSource([path]))


def test_a_stopped_source_ends_after_the_current_batch(tmp_path: Path) -> None:
    msgs = random_stream(50, seed=6)
    src = FileSource([recording(tmp_path / "rec.gz", "".join(f"{m.ts_local} {m.payload}\n" for m in msgs))], 10)

    async def run() -> list[int]:
        out = []
        async for b in src.batches():
            out.append(len(b))
            src.stop()
        return out

    assert asyncio.run(run()) == [10]


def _read_until_damage(src: FileSource) -> tuple[list[RawMessage], str]:
    """The messages passed on before the source raised, and its error line."""
    got: list[RawMessage] = []

    async def run() -> None:
        async for b in src.raw_batches():
            got.extend(b)

    with pytest.raises(DataError) as err:
        asyncio.run(run())
    return got, str(err.value)


def _whole_lines_before(damaged: bytes) -> int:
    """Independent count: the complete lines zlib recovers from a damaged gzip, fed byte by byte."""
    d, out = zlib.decompressobj(wbits=31), bytearray()
    for i in range(len(damaged)):
        try:
            out += d.decompress(damaged[i : i + 1])
        except zlib.error:
            break
    return out.count(b"\n")


@pytest.mark.parametrize("block", [files._BLOCK, 5_000])  # the default read block, and many blocks
def test_a_truncated_gzip_keeps_every_complete_line_before_the_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(files, "_BLOCK", block)
    msgs = random_stream(400, seed=8)
    lines = [f"{m.ts_local} {m.payload}\n" for m in msgs]
    whole = recording(tmp_path / "whole.gz", "".join(lines)).read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole[: int(len(whole) * 0.7)])  # a recorder killed mid-write
    kept = _whole_lines_before(cut.read_bytes())
    assert 0 < kept < len(lines)
    got, error = _read_until_damage(FileSource([cut], batch_lines=20_000))  # one batch would hold them all
    assert [m.payload for m in got] == [m.payload for m in msgs[:kept]]
    assert f"corrupt after line {kept} " in error and f"the {kept:,} messages before it are stored" in error
    assert "EOFError" in error and "\n" not in error


def test_a_corrupt_gzip_keeps_the_lines_before_the_damage(tmp_path: Path) -> None:
    msgs = random_stream(400, seed=9)
    whole = recording(tmp_path / "whole.gz", "".join(f"{m.ts_local} {m.payload}\n" for m in msgs)).read_bytes()
    at = len(whole) // 2
    bad = tmp_path / "bad.gz"
    bad.write_bytes(whole[:at] + b"\xff" * 64 + whole[at + 64 :])  # 64 bytes overwritten mid-file
    kept = _whole_lines_before(bad.read_bytes())
    got, error = _read_until_damage(FileSource([bad]))
    assert 0 < len(got) <= kept < len(msgs)
    assert kept - len(got) <= 25  # lost at most what files._GZ_RETRY compressed bytes hold
    assert [m.payload for m in got] == [m.payload for m in msgs[: len(got)]]
    assert f"the {len(got):,} messages before it are stored" in error


def test_a_gzip_of_several_members_is_read_whole(tmp_path: Path) -> None:
    msgs = random_stream(60, seed=10)
    parts = [
        recording(tmp_path / f"{i}.gz", "".join(f"{m.ts_local} {m.payload}\n" for m in msgs[i::3])) for i in range(3)
    ]
    both = tmp_path / "members.gz"
    both.write_bytes(b"".join(p.read_bytes() for p in parts))  # `cat a.gz b.gz c.gz`: one valid gzip file
    got = messages(read_all(FileSource([both])))
    assert [m.payload for m in got] == [m.payload for i in range(3) for m in msgs[i::3]]
