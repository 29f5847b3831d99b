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
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import numba as nb
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger(__name__)


def kernel_jit(**options: Any) -> Callable[[F], F]:
    """``numba.njit(**options)`` without reference counting (see the module docstring)."""
    jit: Callable[[F], F] = nb.njit(**{"_nrt": False, **options})
    return jit


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


_tolerate_stale_caches()
