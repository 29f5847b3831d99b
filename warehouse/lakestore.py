"""Where the lake's files live: a local folder, or a bucket on S3 or an S3-compatible store.

Retention (warehouse/retention.py) writes each hour's file through a :class:`Store`: COPY to a local
``.partial`` file, read it back and check it, then :meth:`Store.publish` puts it in its final place
atomically: a rename in the folder, or one S3 upload (an object appears whole when its PUT or its
multipart upload completes; a reader never sees half of one), its size checked after. Only then
does the DELETE and the manifest line commit, so a crash between the two leaves a complete file the
manifest does not list, merged by the next run (:meth:`Store.existing` hands it back as a local file).

S3 goes through pyarrow's own S3 filesystem (DuckDB's httpfs extension is downloaded at run time,
which this box cannot). Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
AWS_SESSION_TOKEN, when set) in the environment only, are handed to pyarrow explicitly and never
logged; the SDK's other sources (profile files, the EC2 metadata service) are never consulted. The
endpoint and region of each bucket retention wrote to are kept in the DuckDB file (``lake_s3``,
warehouse/lake.py), so a reader needs the credentials and nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from core.config import AppConfig, S3Url
from core.errors import DataError, UnavailableError, UserError
from warehouse import lake

DEFAULT_REGION = "us-east-1"
KEY_ID, SECRET, TOKEN = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"


@dataclass(frozen=True)
class Placed:
    """A published file: its manifest path, its size, and a local copy to count its rows from."""

    stored: str
    bytes: int
    local: Path


class Store(Protocol):
    """A place for the lake's files, as retention writes them."""

    @property
    def name(self) -> str:
        """The archive as the user wrote it (a folder or an s3:// URL), for messages."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold this for a whole run: one retain at a time per archive."""
        ...

    def sweep(self) -> None:
        """Remove what a crash mid-export left (``.partial`` files): their rows are still in DuckDB."""
        ...

    def stage(self, rel: str) -> Path:
        """The local ``.partial`` file the hour ``rel`` (its path below the archive) is written to."""
        ...

    def existing(self, rel: str) -> Path | None:
        """A local readable copy of the hour's file when one is already there (to merge), else None."""
        ...

    def publish(self, partial: Path, rel: str) -> Placed:
        """Put the checked ``partial`` at ``rel`` atomically and say how the manifest lists it."""
        ...

    def done(self, placed: Placed) -> None:
        """After the manifest commit: drop local copies a remote store no longer needs."""
        ...


def fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk before the next step counts on it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(folder: Path, what: str) -> Iterator[None]:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"warehouse.retention.archive {folder}: is a file, not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnavailableError(f"{folder}: cannot create the archive: {exc.strerror}") from None
    with (folder / ".retain.lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnavailableError(f"{what}: another retain is running") from None
        yield


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnavailableError(f"{folder}: cannot create the archive directory: {exc.strerror}") from None


@dataclass(frozen=True)
class LocalStore:
    """The lake in a folder (local or mounted); manifest paths relative to ``root`` when below it."""

    archive: Path
    root: Path  # the warehouse file's folder

    @property
    def name(self) -> str:
        return str(self.archive)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return _flock(self.archive, str(self.archive))

    def sweep(self) -> None:
        for stale in self.archive.rglob("*.partial"):
            stale.unlink()

    def stage(self, rel: str) -> Path:
        final = self.archive / rel
        _mkdir(final.parent)
        return final.with_name(final.name + ".partial")

    def existing(self, rel: str) -> Path | None:
        final = self.archive / rel
        return final if final.exists() else None

    def publish(self, partial: Path, rel: str) -> Placed:
        final = self.archive / rel
        fsync(partial)
        os.replace(partial, final)
        fsync(final.parent)
        return Placed(lake.stored_path(self.root, final), final.stat().st_size, final)

    def done(self, placed: Placed) -> None:
        return None


def credentials() -> tuple[str, str, str | None]:
    """(key id, secret, session token) from the environment; a missing one is one line (exit 2)."""
    key, secret = os.environ.get(KEY_ID, ""), os.environ.get(SECRET, "")
    if not key or not secret:
        raise UserError(f"the lake is on S3: set {KEY_ID} and {SECRET} in the environment")
    return key, secret, os.environ.get(TOKEN) or None


def s3_filesystem(endpoint: str, region: str) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for ``endpoint`` (http(s)://host:port; '' for AWS) and ``region``,
    signed with the environment's credentials only."""
    key, secret, token = credentials()
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance for a region or role
    kw: dict[str, object] = {}
    if endpoint:
        parts = urlsplit(endpoint)
        kw = {"endpoint_override": parts.netloc, "scheme": parts.scheme}
    return pafs.S3FileSystem(
        access_key=key,
        secret_key=secret,
        session_token=token,
        region=region or DEFAULT_REGION,
        connect_timeout=5,
        request_timeout=60,
        **kw,
    )


def s3_error(what: str, exc: OSError) -> UnavailableError:
    """An S3 failure as one line (exit 4), its first line only: never a request's signature."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UnavailableError(f"{what}: {text}")


@dataclass(frozen=True)
class S3Store:
    """The lake in a bucket: files staged in a local folder beside the warehouse, then uploaded."""

    url: S3Url
    endpoint: str  # '' for AWS
    region: str
    staging: Path  # <warehouse file>.lake-staging: same disk as the warehouse

    @property
    def name(self) -> str:
        return self.url.url

    @functools.cached_property
    def fs(self) -> pafs.S3FileSystem:
        return s3_filesystem(self.endpoint, self.region)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return _flock(self.staging, f"{self.url.url} (staged in {self.staging})")

    def sweep(self) -> None:
        for stale in self.staging.rglob("*.parquet*"):
            stale.unlink()

    def stage(self, rel: str) -> Path:
        local = self.staging / rel
        _mkdir(local.parent)
        return local.with_name(local.name + ".partial")

    def existing(self, rel: str) -> Path | None:
        key = self.url.key(rel)
        fs = self.fs
        try:
            if fs.get_file_info(key).type != pafs.FileType.File:
                return None
            local = self.staging / (rel + ".old")
            _mkdir(local.parent)
            with fs.open_input_stream(key) as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as exc:
            raise s3_error(f"{self.url.url}/{rel}: cannot read the archive", exc) from None
        return local

    def publish(self, partial: Path, rel: str) -> Placed:
        key, size = self.url.key(rel), partial.stat().st_size
        fs = self.fs
        try:
            with partial.open("rb") as src, fs.open_output_stream(key) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
            got = fs.get_file_info(key).size
        except OSError as exc:
            raise s3_error(f"{self.url.url}/{rel}: cannot write the archive", exc) from None
        if got != size:
            raise DataError(f"{self.url.url}/{rel}: {got} bytes uploaded, {size} written; nothing deleted")
        local = partial.with_name(partial.name.removesuffix(".partial"))
        os.replace(partial, local)
        return Placed(f"s3://{key}", size, local)

    def done(self, placed: Placed) -> None:
        placed.local.unlink(missing_ok=True)
        placed.local.with_name(placed.local.name + ".old").unlink(missing_ok=True)


def open_store(cfg: AppConfig) -> LocalStore | S3Store:
    """The store ``warehouse.retention.archive`` names (S3: the credentials are checked here)."""
    rc, path = cfg.warehouse.retention, cfg.resolve(cfg.warehouse.path)
    archive = cfg.resolve(rc.archive)
    if isinstance(archive, S3Url):
        credentials()
        staging = path.with_name(path.name + ".lake-staging")
        return S3Store(archive, rc.s3_endpoint or "", rc.s3_region or DEFAULT_REGION, staging)
    return LocalStore(archive, path.parent)
