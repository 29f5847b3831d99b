"""The runner's journal: every decision, order, fill, position and PnL, durable as it happens.

One SQLite file per account, ``<mode>-<source>.sqlite`` (``paper-bybit``, ``paper-sim``,
``paper-replay``, ``live-bybit``: a replay never touches the paper account of a live feed), in
WAL mode: the runner is its only writer and commits after every step it takes (a decision, a
wake, a request), so a crash loses nothing that was acknowledged; with ``journal_sync: full`` a
commit is also fsynced. Any number of readers (the dashboard, ``python -m live.journal``, a
notebook) read it while the runner writes.

    records   seq, ts_ns, session, kind, order_id, data (JSON)
    commands  id, ts_ns, command, done_ns       operator commands the runner polls (resume, halt)

Kinds: start, model, decision, submit, amend, cancel, cancel_all, done, fill, account, slippage,
alert, halt, resume, feed, stop; live orders also end in filled, cancelled or reject, and an amend
or cancel the exchange turns down while the order stays open is ``refused``. ``account`` rows
carry the whole paper account (position, cash, fees, funding, equity, risk peak and day start),
so a restart restores it from the last one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    session TEXT NOT NULL,
    kind TEXT NOT NULL,
    order_id INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, seq);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    command TEXT NOT NULL,
    done_ns INTEGER
);
"""

COMMANDS = ("resume", "halt", "stop")
# an order's last record: paper writes "done", the live gateway what Bybit said ("refused", one
# amend or cancel turned down while the order stays open, is not among them)
_ENDS = "'done', 'cancelled', 'filled', 'reject'"


@dataclass(frozen=True)
class Record:
    seq: int
    ts_ns: int
    session: str
    kind: str
    order_id: int | None
    data: dict[str, Any]


@dataclass
class Restored:
    """What a new session starts from: the last account, the order ids used, orders left open."""

    account: dict[str, Any] | None = None
    last_order_id: int = 0
    open_orders: dict[int, dict[str, Any]] = field(default_factory=dict)  # order id -> its submit record
    client_ids: dict[str, int] = field(default_factory=dict)  # live: orderLinkId -> order id
    sessions: int = 0
    accounts: list[tuple[str, str]] = field(default_factory=list)  # the (mode, source) its sessions started as
    data_ns: int | None = None  # the market time the last account record was marked at


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a journal")
    try:
        if readonly:
            if not path.exists():
                raise UserError(f"{path}: no journal (has the runner run in this mode?)")
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise UserError(f"{path}: cannot open the journal ({exc})") from None
    try:
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        con.close()
        raise UserError(f"{path}: not a journal ({exc})") from None
    return con


def default_path(journal_dir: Path, mode: str, source: str) -> Path:
    """The journal of one account: ``<journal_dir>/<mode>-<source>.sqlite``."""
    return journal_dir / f"{mode}-{source}.sqlite"


def log_path(log_dir: Path, journal: Path) -> Path:
    """The runner log of the account whose journal is ``journal``: ``<log_dir>/runner-<journal's stem>.log``.
    One file per account, as one runner at a time holds an account: two runners (a paper one and
    a live one, say) never rotate one file under each other."""
    return log_dir / f"runner-{journal.stem}.log"


def written_ns(path: Path) -> int | None:
    """When the journal at ``path`` was last written (its WAL or the file itself), wall clock; None
    without one. An empty WAL is left out: a reader creates one when it opens the journal."""
    times = []
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            st = p.stat()
        except OSError:
            continue
        if st.st_size > 0 or p == path:
            times.append(st.st_mtime_ns)
    return max(times) if times else None


def journals(journal_dir: Path) -> list[Path]:
    """Every journal in ``journal_dir``, the most recently written first."""
    if not journal_dir.is_dir():
        return []
    return sorted(journal_dir.glob("*.sqlite"), key=lambda p: written_ns(p) or 0, reverse=True)


class Journal:
    """The writer. ``add`` buffers a record in the open transaction; ``commit`` makes it durable."""

    def __init__(self, path: Path, session: str, sync: str = "full") -> None:
        self.path, self.session = path, session
        self.con = _connect(path, readonly=False)
        try:
            self.con.execute("PRAGMA journal_mode=WAL").fetchall()
            self.con.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self.con.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.con.close()
            raise UserError(f"{path}: cannot open the journal ({exc})") from None
        self._open = False
        self.written = 0

    def add(self, kind: str, ts_ns: int, order_id: int | None = None, **data: Any) -> None:
        if not self._open:
            self.con.execute("BEGIN")
            self._open = True
        self.con.execute(
            "INSERT INTO records (ts_ns, session, kind, order_id, data) VALUES (?, ?, ?, ?, ?)",
            (int(ts_ns), self.session, kind, order_id, json.dumps(data, default=_plain, allow_nan=True)),
        )
        self.written += 1

    def commit(self) -> None:
        if self._open:
            self.con.execute("COMMIT")
            self._open = False

    def pending_commands(self) -> list[tuple[int, str]]:
        return [(int(i), str(c)) for i, c in self.con.execute("SELECT id, command FROM commands WHERE done_ns IS NULL")]

    def command_done(self, command_id: int, ts_ns: int) -> None:
        self.add("command", ts_ns, command_id=command_id)
        self.con.execute("UPDATE commands SET done_ns = ? WHERE id = ?", (int(ts_ns), command_id))

    def restore(self) -> Restored:
        return restore(self.con)

    def close(self) -> None:
        self.commit()
        self.con.close()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def restore(con: sqlite3.Connection) -> Restored:
    """Read back the state a crashed or stopped session left (paper: the account is the truth)."""
    out = Restored()
    row = con.execute("SELECT ts_ns, data FROM records WHERE kind = 'account' ORDER BY seq DESC LIMIT 1").fetchone()
    if row is not None:
        out.account = json.loads(row[1])
        mark = out.account.get("data_ts", row[0]) if isinstance(out.account, dict) else row[0]
        out.data_ns = int(mark)  # older journals: the paper exchange's clock
    for (data,) in con.execute("SELECT data FROM records WHERE kind = 'start' ORDER BY seq"):
        d = json.loads(data)
        owner = (str(d.get("mode")), str(d.get("source")))
        if owner not in out.accounts:
            out.accounts.append(owner)
    row = con.execute("SELECT max(order_id), count(DISTINCT session) FROM records").fetchone()
    out.last_order_id, out.sessions = int(row[0] or 0), int(row[1] or 0)
    for kind, oid, data in con.execute(
        f"SELECT kind, order_id, data FROM records WHERE kind IN ('submit', {_ENDS}) ORDER BY seq"
    ):
        if kind == "submit":
            d = json.loads(data)
            out.open_orders[int(oid)] = d
            if d.get("client_id"):
                out.client_ids[str(d["client_id"])] = int(oid)
        else:
            out.open_orders.pop(int(oid), None)
    return out


def inspect(path: Path) -> Restored:
    """What a journal holds, read without writing (an empty ``Restored`` when there is no file yet)."""
    if not path.exists():
        return Restored()
    con = _connect(path, readonly=True)
    try:
        return restore(con)
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise UserError(f"{path}: not a journal ({exc})") from None
    finally:
        con.close()


def read(path: Path, kinds: Sequence[str] | None = None, after: int = 0) -> Iterator[Record]:
    """Records after ``seq`` (optionally of some kinds), while the runner may be writing."""
    con = _connect(path, readonly=True)
    try:
        sql = "SELECT seq, ts_ns, session, kind, order_id, data FROM records WHERE seq > ?"
        params: list[Any] = [after]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params += list(kinds)
        for seq, ts, session, kind, oid, data in con.execute(sql + " ORDER BY seq", params):
            yield Record(int(seq), int(ts), str(session), str(kind), oid, json.loads(data))
    except sqlite3.OperationalError as exc:
        raise UserError(f"{path}: cannot read the journal ({exc})") from None
    finally:
        con.close()


def send_command(path: Path, command: str, ts_ns: int) -> None:
    """Queue an operator command for the running runner (it polls every status interval)."""
    if command not in COMMANDS:
        raise UserError(f"unknown command {command!r} (one of {', '.join(COMMANDS)})")
    if not path.exists():
        raise UserError(f"{path}: no journal (has the runner run in this mode?)")
    con = _connect(path, readonly=False)
    try:
        con.execute("INSERT INTO commands (ts_ns, command) VALUES (?, ?)", (int(ts_ns), command))
    finally:
        con.close()
