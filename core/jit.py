"""``kernel_jit``: numba.njit for the hot kernels, compiled without numba's reference counting.

A kernel works on arrays its caller owns for the whole call. With numba's runtime (NRT) on, every
non-inlined call still increments and decrements the reference count of each array it is passed,
and so does every read of an array field of a NamedTuple of state: atomic operations that were
75 % of the engine's replay time (perf, bench/bench_hftbacktest.py's recording with the quoting
rule), more than the matching itself. ``kernel_jit`` compiles without them (numba's ``_nrt``
target option), which holds for a function that:

- allocates nothing, and calls nothing that does: no ``np.empty`` / ``np.zeros``, ``.copy()``,
  array expressions or array-to-array slice assignments (numba refuses them at compile time,
  "NRT required but not enabled", in the function and in the functions it calls, which are
  compiled in its mode); element loops and views of its arguments are fine;
- returns no array to a caller compiled with NRT (that caller would release a reference it was
  never given), unless it is ``inline="always"``: inlined, it takes its caller's mode.

A function compiled with NRT may call a kernel. Interpreted (NUMBA_DISABLE_JIT=1, the coverage
pass) the option is ignored.

**The on-disk cache is keyed on every source a kernel can depend on.** numba invalidates a cached kernel when
its own file changes, not when a kernel it calls, a record layout or a constant it compiled in
changes in another module: the old machine code would run on. Here every cached kernel lives in
``.cache/numba/<key>``, the key a hash of every module that holds cached kernels (``cache=True``
in a package of ``KERNEL_PACKAGES``) and of every project module they import, directly or through
each other: any change there is a fresh cache, and a change elsewhere (the registry, a flow, the
runner's loop) keeps the compiled kernels. A cache is compiled once (``make warm``, or a
process's own start-up: the runner's rehearsal, live/rehearse.py). ``NUMBA_CACHE_DIR`` set by the
user wins. ``Kernels`` counts what every kernel has compiled or loaded, so that a process can tell
a kernel readied after its start-up (a stall) from one readied before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numba as nb
import numpy as np
from numba.core.dispatcher import Dispatcher

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger(__name__)


def kernel_jit(**options: Any) -> Callable[[F], F]:
    """``numba.njit(**options)`` without reference counting (see the module docstring)."""
    jit: Callable[[F], F] = nb.njit(**{"_nrt": False, **options})
    return jit


def typed_int(value: int) -> int:
    """``value`` as a numpy int64, for a constant a kernel is passed. numba types a Python int global
    (or a literal) handed to another kernel as a literal, and compiles that kernel once more for each
    value it sees (``sim.writer._put`` was compiled 18 times, ``execution.records.push_report``
    nine); a numpy int is typed int64, one compile for all. Typed ``int`` for Python's checkers."""
    return cast(int, np.int64(value))


def read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Read-only views of ``arrays``: what a kernel that only reads an array is handed, so that it is
    compiled for one type whoever owns the array (numba types a read-only array apart: the warehouse
    reader's are, the engine's own buffers are not, and each type would be a compile of its own)."""
    views = []
    for a in arrays:
        v = a.view()
        v.flags.writeable = False
        views.append(v)
    return tuple(views)


def _tolerate_stale_caches() -> None:
    """Make an on-disk numba cache written by an older version of the code a miss, not a crash.

    numba unpickles a function's whole cache index (every signature it was ever compiled for) before
    it compares the source's stamp; a signature naming a class since moved or removed (a record type
    of an earlier version) then raises ModuleNotFoundError at the first call, and every command
    that runs the kernel fails until someone deletes ``__pycache__``. Here such an index reads as
    empty: the kernel compiles again and its index is rewritten (numba 0.68's
    ``IndexDataCacheFile._load_index``; a test holds it, tests/test_jit.py)."""
    from numba.core import caching

    load: Callable[[Any], Any] = caching.IndexDataCacheFile._load_index
    if getattr(load, "tolerant", False):
        return

    def tolerant(self: Any) -> Any:
        try:
            return load(self)
        except (ImportError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
            _log.info("numba cache %s is from another version of the code (%s): compiling again", self._index_path, exc)
            return {}

    tolerant.tolerant = True  # type: ignore[attr-defined]
    setattr(caching.IndexDataCacheFile, "_load_index", tolerant)  # noqa: B010 (a method replaced)


REPO = Path(__file__).resolve().parents[1]
KERNEL_PACKAGES = ("execution", "features", "market", "models", "sim")  # every module with cached kernels
KEEP_OLD_CACHES_S = 7 * 86_400  # a cache of other sources unused this long is removed
PROJECT_PACKAGES = ("core", "market", "features", "warehouse", "models", "execution", "sim", "pipelines", "live")
# ``import a.b [as x]``, and ``from a.b import c, d`` or ``from a.b import (\n c,\n d,\n)`` (modules
# ``a.b.c``, or names of ``a.b``), at any indent
_IMPORT = re.compile(
    rb"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+(?:\(([^)]*)\)|([^\n#]*))|import[ \t]+([\w.]+))", re.MULTILINE
)


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def kernel_sources(root: Path = REPO, packages: tuple[str, ...] = KERNEL_PACKAGES) -> list[Path]:
    """What a compiled kernel can depend on: every module of ``packages`` that holds cached kernels
    (says ``cache=True``), and every project module those import, directly or through each other, the
    packages' ``__init__`` modules on the way included (a kernel reads another module's constants,
    record layouts and kernels only through an import)."""
    seeds = [p for pkg in packages for p in sorted((root / pkg).rglob("*.py")) if b"cache=True" in p.read_bytes()]
    seen: set[Path] = set()
    todo = list(seeds)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for frm, wrapped, names, imp in _IMPORT.findall(path.read_bytes()):
            dotted = (frm or imp).decode()
            if dotted.split(".")[0] not in PROJECT_PACKAGES:
                continue
            listed = (wrapped or names).decode().replace(",", " ").split()  # "c as x" names c, as, x: harmless
            candidates = [dotted] + [f"{dotted}.{n}" for n in listed if n.isidentifier()]
            for name in candidates:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # a.b.c imports a and a.b first
                    found = _module_file(root, ".".join(parts[:i]))
                    if found is not None and found not in seen:
                        todo.append(found)
    return sorted(seen)


def sources_key(root: Path = REPO, packages: tuple[str, ...] = KERNEL_PACKAGES) -> str:
    """A hash of ``kernel_sources``: a change to any of them (or a module added to them or taken out)
    is a fresh cache."""
    h = hashlib.sha256()
    for path in kernel_sources(root, packages):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _use_keyed_cache() -> None:
    """numba's cache in ``.cache/numba/<sources_key>`` unless NUMBA_CACHE_DIR says otherwise."""
    from numba.core import config

    if os.environ.get("NUMBA_CACHE_DIR") or getattr(config, "CACHE_DIR", ""):
        return
    base = REPO / ".cache" / "numba"
    here = base / sources_key()
    try:
        here.mkdir(parents=True, exist_ok=True)
        os.utime(here)  # in use: not old
        for old in base.iterdir():
            if old != here and old.is_dir() and time.time() - old.stat().st_mtime > KEEP_OLD_CACHES_S:
                import shutil

                shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:  # a read-only checkout: numba's own place (__pycache__ or the user's cache)
        _log.info("numba cache %s not writable (%s): numba's default", here, exc)
        return
    setattr(config, "CACHE_DIR", str(here))  # noqa: B010 (numba's config module sets it from the environment)


@dataclass(frozen=True)
class Kernels:
    """How many signatures every loaded kernel has readied (compiled or loaded from the cache)."""

    counts: dict[str, int]

    @classmethod
    def snapshot(cls) -> Kernels:
        counts: dict[str, int] = {}
        root = str(REPO)
        for module in list(sys.modules.values()):
            file = getattr(module, "__file__", None) or ""
            if not file.startswith(root) or "/.venv/" in file:
                continue
            for value in list(vars(module).values()):
                if isinstance(value, Dispatcher):
                    f = value.py_func
                    counts[f"{f.__module__}.{f.__qualname__}"] = len(value.overloads)
        return cls(counts)

    def readied_since(self, before: Kernels) -> int:
        return sum(n - before.counts.get(k, 0) for k, n in self.counts.items())

    def new_since(self, before: Kernels) -> list[str]:
        """The kernels with a signature readied after ``before``."""
        return sorted(k for k, n in self.counts.items() if n > before.counts.get(k, 0))


class LateKernels:
    """Logs, once each, the kernels readied after it was made (after a process's start-up: a stall)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.start = Kernels.snapshot()
        self.late: list[str] = []

    def check(self) -> list[str]:
        if late := [k for k in Kernels.snapshot().new_since(self.start) if k not in self.late]:
            self.late += late
            self.log.warning("kernel(s) readied after start-up, a stall inside the loop: %s", ", ".join(late))
        return late


_tolerate_stale_caches()
_use_keyed_cache()
