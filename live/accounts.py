"""Which account a run trades: one journal per mode and market-data source, kept to itself.

A journal is an account (cash, position, fees, the orders it placed). A run writes
``live.journal_dir/<mode>-<source>.sqlite`` (``paper-bybit``, ``paper-sim``, ``paper-replay``,
``live-bybit``) unless ``--journal PATH`` names another, and refuses in one line, before its
session starts:

- a journal whose sessions ran as another mode or on another source: a live account is never
  continued by a paper run nor a paper account by a live one; a replay never continues a live-feed
  account nor a live feed a replay's (their prices are months apart); the simulator never Bybit's;
- a replay that would take its account back in time: it continues only from after the market
  time the account was last marked at (else it buys back a position at an earlier price); without
  ``--start`` a replay continues its account from there;
- a journal another runner is writing: one runner per account (an advisory lock beside the
  journal, which the system releases when the process ends, however it ends).

Earlier versions kept one journal per mode (``paper.sqlite``, ``live.sqlite``) shared by every
source. Such a journal is left as it is and its account is not continued; a run says so once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from core.config import AppConfig
from core.errors import UserError
from core.timefmt import format_ns
from live.feed import Feed
from warehouse.journal import Restored, default_path, inspect


def journal_path(cfg: AppConfig, mode: str, source: str, chosen: Path | None = None) -> Path:
    """The journal a run writes: ``chosen``, else the account's default."""
    return chosen if chosen is not None else default_path(cfg.resolve(cfg.live.journal_dir), mode, source)


def check_account(path: Path, mode: str, source: str, start_ns: int | None, default: Path) -> Restored:
    """What the journal at ``path`` holds; a UserError when a ``mode`` run on ``source`` may not continue it.

    ``start_ns``: the market time a replay starts at (None for the live-paced sources).
    """
    held = inspect(path)
    ours = f"a {mode} run on --source {source}"
    other = "start a new account with another --journal"
    if path.resolve() != default.resolve():
        other = f"its own account is {default}, or {other}"
    if len(held.accounts) > 1:
        names = ", ".join(f"{m} on --source {s}" for m, s in held.accounts)
        raise UserError(f"{path} mixes the sessions of several accounts ({names}): {ours} cannot continue it; {other}")
    if held.accounts and held.accounts[0] != (mode, source):
        m, s = held.accounts[0]
        raise UserError(f"{path} is the {m} account on --source {s}: {ours} never continues it; {other}")
    if start_ns is not None and held.data_ns is not None and start_ns <= held.data_ns:
        raise UserError(
            f"{path}: its account was last marked at {format_ns(held.data_ns)}; a replay from "
            f"{format_ns(start_ns)} would take it back in time: leave out --start to continue it, or {other}"
        )
    return held


def claim(cfg: AppConfig, mode: str, source: str, chosen: Path | None, feed: Feed) -> tuple[Path, int | None]:
    """The journal of a run's account and the market time its feed starts at, checked (a one-line
    UserError) before anything is opened: whose account it is, the feed's window, another runner."""
    path, default = journal_path(cfg, mode, source, chosen), journal_path(cfg, mode, source)
    held = check_account(path, mode, source, None, default)
    start_ns = feed.prepare(held.data_ns)  # an empty replay window is refused here
    check_account(path, mode, source, start_ns, default)
    if path.exists():
        AccountLock(path).release()  # nobody trades it now (the runner then takes the lock for good)
    return path, start_ns


def old_journal_note(cfg: AppConfig, mode: str, source: str, path: Path) -> str | None:
    """The line to log when the shared journal of earlier versions (``<mode>.sqlite``) is still there."""
    old = cfg.resolve(cfg.live.journal_dir) / f"{mode}.sqlite"
    if not old.exists() or old.resolve() == path.resolve():
        return None
    try:
        held = inspect(old)
    except UserError:
        held = Restored()
    what, hint = "", ""
    if (a := held.account) is not None:
        what = f" (position {float(a.get('position', 0.0)):+.3f} BTC, equity {float(a.get('equity', 0.0)):,.2f})"
    if held.accounts == [(mode, source)]:  # it only ever was this run's account: it may be chosen
        hint = f"; --journal {old} continues it"
    return (
        f"the old shared journal {old} is no longer used; its account{what} is not continued "
        f"(each mode and source has its own journal now; this run writes {path}{hint})"
    )


class AccountLock:
    """One runner per account: an exclusive lock on ``<journal>-lock``, held until ``release``."""

    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + "-lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{journal}: cannot keep a journal there ({exc.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise UserError(
                f"{journal}: another runner (pid {holder}) trades this account; one runner per account"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
