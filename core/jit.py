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

from collections.abc import Callable
from typing import Any, TypeVar

import numba as nb

F = TypeVar("F", bound=Callable[..., Any])


def kernel_jit(**options: Any) -> Callable[[F], F]:
    """``numba.njit(**options)`` without reference counting (see the module docstring)."""
    jit: Callable[[F], F] = nb.njit(**{"_nrt": False, **options})
    return jit
