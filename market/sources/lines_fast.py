"""Byte-level splitting of ``<local ts> <json>`` recording lines (numba): no Python object per line.

``split_prefixed`` reads a block of whole lines and writes the payloads back to back, with their
offsets and local receive times in ns, exactly as the line-by-line reader in files.py does: the
stamp is the text before the first space and must be digits, the payload is the rest with
trailing carriage returns removed, a line of whitespace is skipped, any other line is an error.
What it cannot decide byte-wise the way Python's str methods do (a non-ASCII byte in the stamp or
in a line without one, a stamp that does not fit an int64 once in ns) makes it give up on the
block (UNSURE), which then takes the line-by-line path.
"""

from __future__ import annotations

import numba as nb
import numpy as np

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)

OK = 0
BAD_LINE = 1  # a line that is neither "<digits> <payload>" nor whitespace
UNSURE = 2  # leave the block to the line-by-line reader

_INT64_MAX = np.iinfo(np.int64).max
_US_BELOW = 100_000_000_000_000_000  # stamps below this are in us (market.venues.binance.local_ts_to_ns)


@nb.njit(cache=True)
def _is_space(c: int) -> bool:
    """ASCII whitespace as str.strip() sees it: \\t \\n \\v \\f \\r, \\x1c-\\x1f and space."""
    return 9 <= c <= 13 or 28 <= c <= 32


@nb.njit(cache=True, nogil=True)
def split_prefixed(buf: np.ndarray, out: np.ndarray, offsets: np.ndarray, ts: np.ndarray) -> tuple[int, int, int]:
    """Split buf into lines; (messages written, status, index of the line the status refers to).

    Payload k is out[offsets[k]:offsets[k + 1]], received at ts[k] (ns). out needs buf's size,
    offsets and ts one entry per line (+1 for offsets).
    """
    end = buf.shape[0]
    pos = 0
    line = 0
    m = 0
    w = 0
    offsets[0] = 0
    while pos < end:
        e = pos
        while e < end and buf[e] != 10:
            e += 1
        i = pos
        v = 0
        fits = True
        while i < e and 48 <= buf[i] <= 57:
            d = int(buf[i]) - 48  # int(): uint8 arithmetic would wrap (interpreted mode)
            if v > (_INT64_MAX - d) // 10:
                fits = False
            else:
                v = v * 10 + d
            i += 1
        if i > pos and i < e and buf[i] == 32:
            if not fits:
                return m, UNSURE, line
            if v < _US_BELOW:
                if v > _INT64_MAX // 1000:
                    return m, UNSURE, line
                v *= 1000
            a = i + 1
            b = e
            while b > a and buf[b - 1] == 13:
                b -= 1
            out[w : w + b - a] = buf[a:b]
            w += b - a
            ts[m] = v
            m += 1
            offsets[m] = w
        else:  # not "<digits> ": only whitespace is allowed
            blank = True
            for j in range(pos, e):
                c = int(buf[j])
                if c >= 128:  # str.isdigit() and str.strip() know more than ASCII
                    return m, UNSURE, line
                blank = blank and _is_space(c)
            if not blank:
                return m, BAD_LINE, line
        pos = e + 1
        line += 1
    return m, OK, line
