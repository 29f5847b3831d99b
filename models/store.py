"""Where the MLflow store lives, and keeping it with the project folder when that moves or is copied.

MLflow writes absolute ``file:///...`` artifact URIs into its database (experiments, runs, model
versions, logged models) and into every ``MLmodel`` file, and has no relative form for a SQLite
store used directly (``mlflow-artifacts:/`` URIs need a tracking server in between). A copied
project would then read, and its new runs write, the original's artifacts, and a moved one would
find none (``btc-l2 has no version 1``).

So opening the store (``locate``) compares the artifact root stored for the project's experiment
with the configured one (``mlflow.artifacts``). When they differ and the configured folder holds
the store's artifacts (a copy or a move), every stored path under the old root is rebased onto the
new one in one transaction, and the ``MLmodel`` files with it; a log line says so. A store whose
artifacts are not in the configured folder (someone else's, or a remote one) is never touched, nor
is a shared PostgreSQL store (``mlflow.database``): its artifacts are where every user reaches them.
This module imports MLflow only to create a new store: ``python -m models ui`` uses it before MLflow
loads.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from core.config import AppConfig
from core.errors import UnavailableError

log = logging.getLogger(__name__)
_warned: set[tuple[Path, str]] = set()


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    artifacts_uri: str
    db: Path | None  # the SQLite file; None on a PostgreSQL store (mlflow.database)
    artifacts: Path

    @property
    def where(self) -> str:
        """The store for a person: the file, or the database URL (it never holds the password)."""
        return str(self.db) if self.db is not None else self.tracking_uri


def store(cfg: AppConfig, create: bool = False) -> Store:
    """The configured store; without ``create`` a missing one is a one-line error."""
    art = cfg.resolve(cfg.mlflow.artifacts)
    if cfg.mlflow.database:  # MLflow creates its tables in an empty database on first use
        if create:
            art.mkdir(parents=True, exist_ok=True)
        return Store(cfg.mlflow.database, art.as_uri(), None, art)
    db = cfg.resolve(cfg.mlflow.store)
    if not db.exists() and not create:
        raise UnavailableError(f"no model registry at {db}: train a model first (python -m flows.train)")
    if create:
        db.parent.mkdir(parents=True, exist_ok=True)
        art.mkdir(parents=True, exist_ok=True)
        if not db.exists():
            _create_sqlite(db, art)
    return Store(f"sqlite:///{db}", art.as_uri(), db, art)


def _create_sqlite(db: Path, artifacts: Path) -> None:
    """A new SQLite store, whole or not at all: its tables are created and migrated in a file of
    this process's own, which then takes the store's name in one step (a hard link: never over a
    store that another process created meanwhile).

    MLflow creates its tables wherever it finds a database without them, in every process that
    opens one, and its migrations are not transactional. Created in place, the store is a file with
    half its tables for a second or two, and a process that opens it then (a paper runner waiting
    for its first champion, the dashboard, the MLflow UI, another training) runs the same
    migrations over the ones in progress: one of them fails ("No such constraint", "Circular
    dependency detected") and the store may be left half-migrated. Only a process creating the
    store imports MLflow here."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    part = db.with_name(f".{db.name}.{os.getpid()}.creating")
    part.unlink(missing_ok=True)
    try:
        uri = f"sqlite:///{part}"
        for s in (TrackingStore(uri, artifacts.as_uri()), RegistryStore(uri)):  # type: ignore[no-untyped-call]
            s.engine.dispose()
        try:
            os.link(part, db)
        except FileExistsError:  # another process created it first: theirs is the store
            log.info("the model registry at %s was created by another process meanwhile", db)
    finally:
        part.unlink(missing_ok=True)


def locate(cfg: AppConfig, create: bool = False) -> Store:
    """The configured store, rebased first if the project folder was moved or copied."""
    s = store(cfg, create)
    if s.db is not None and s.db.exists():
        rebase(s.db, s.artifacts, cfg.mlflow.experiment)
    return s


def _path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _stored_root(con: sqlite3.Connection, experiment: str) -> str | None:
    try:
        row = con.execute("SELECT artifact_location FROM experiments WHERE name = ?", [experiment]).fetchone()
    except sqlite3.DatabaseError:  # not an MLflow database (yet)
        return None
    return str(row[0]) if row and row[0] else None


def _under(column: str) -> str:
    """SQL: ``column`` is the root (?1, ?2 = its length) or a path below it."""
    return f'(substr("{column}", 1, ?2) = ?1 AND (length("{column}") = ?2 OR substr("{column}", ?2 + 1, 1) = \'/\'))'


def _holds_copy(con: sqlite3.Connection, old: str, artifacts: Path) -> bool:
    """Does the configured folder hold this store's artifacts at the same places below the root?"""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    stored = [
        str(r[0])
        for table, column in (("runs", "artifact_uri"), ("logged_models", "artifact_location"))
        if table in tables  # logged_models came with MLflow 3
        for r in con.execute(f'SELECT "{column}" FROM "{table}" WHERE {_under(column)}', [old, len(old)])
    ]
    if not stored:  # nothing stored yet: ours if the old folder is gone (a move), else leave it be
        return not _path(old).exists()
    return any((artifacts / s[len(old) :].lstrip("/")).exists() for s in stored)


def _text_columns(con: sqlite3.Connection) -> list[tuple[str, str]]:
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = []
    for t in tables:
        if t.startswith("sqlite_") or t == "alembic_version":
            continue
        for _, name, kind, *_ in con.execute(f'PRAGMA table_info("{t}")'):
            if any(k in str(kind).upper() for k in ("CHAR", "TEXT", "CLOB")):
                out.append((t, str(name)))
    return out


def rebase(db: Path, artifacts: Path, experiment: str) -> dict[str, int]:
    """Rebase every stored path under the store's old artifact root onto ``artifacts``; what changed
    (``table.column`` -> rows, ``MLmodel`` -> files), empty when nothing had to."""
    new = artifacts.as_uri()
    try:
        con = sqlite3.connect(f"{db.absolute().as_uri()}?mode=rw", uri=True, timeout=60, isolation_level=None)
    except sqlite3.OperationalError:  # no such file: nothing stored yet
        return {}
    try:
        old = _stored_root(con, experiment)
        if old is None or old == new or not old.startswith("file:"):
            return {}
        if _path(old).exists() and _path(old).resolve() == artifacts.resolve():
            return {}  # the same folder spelled another way (a symlink): nothing moved
        if not _holds_copy(con, old, artifacts):
            if (db, old) not in _warned:
                _warned.add((db, old))
                log.warning("%s keeps its artifacts in %s, not in %s: left as it is", db, old, new)
            return {}
        # the MLmodel files first: if this stops half-way, the database still names the old root and
        # the next open finishes the job (a rewritten MLmodel file is not rewritten again)
        files = _rewrite_mlmodels(artifacts, old, new)
        con.execute("BEGIN IMMEDIATE")  # one writer; another process may have rebased it meanwhile
        try:
            if _stored_root(con, experiment) != old:
                con.execute("ROLLBACK")
                return {}
            changed = {}
            for table, column in _text_columns(con):
                cur = con.execute(
                    f'UPDATE "{table}" SET "{column}" = ?3 || substr("{column}", ?2 + 1) WHERE {_under(column)}',
                    [old, len(old), new],
                )
                if cur.rowcount > 0:
                    changed[f"{table}.{column}"] = cur.rowcount
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    if files:
        changed["MLmodel"] = files
    log.info(
        "the project moved: %s pointed at %s; rebased %d stored paths and %d MLmodel files onto %s",
        db,
        old,
        sum(v for k, v in changed.items() if k != "MLmodel"),
        files,
        new,
    )
    return changed


def _rewrite_mlmodels(artifacts: Path, old: str, new: str) -> int:
    """``artifact_path: <old>/...`` in the MLmodel files below ``artifacts`` -> ``<new>/...``."""
    n = 0
    for f in artifacts.rglob("MLmodel"):
        text = f.read_text()
        fixed = "\n".join(
            line.replace(old, new, 1) if line.startswith("artifact_path: " + old) else line for line in text.split("\n")
        )
        if fixed != text:
            tmp = f.with_name(f.name + ".rebase")
            tmp.write_text(fixed)
            tmp.replace(f)  # atomic: a reader sees the old file or the new one
            n += 1
    return n
