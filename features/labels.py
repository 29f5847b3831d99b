"""Training-only labels from the mid-price path: fixed-horizon returns, dead-zone classes, triple barrier.

Inputs are the mid path by exchange time, ``ts`` (int64 ns, non-decreasing, one entry per book
update) and ``mid`` (float64, > 0), and the sample grid ``t`` (int64 ns, increasing). "Mid as of
x" is the mid at the last book update with ``ts <= x``. Labels look only forward from ``t``; the
barrier width (``realized_vol``) looks only backward. A label whose window runs past the data end
(``ts[-1]``) is missing (``MISSING`` / NaN), never guessed. None of this runs live.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

import numba as nb
import numpy as np
from numpy.typing import ArrayLike, NDArray

import core.jit  # noqa: F401  (an on-disk cache of an older version is a miss, not a crash)

MISSING = np.int8(-128)  # class label of a row without a label (int8 has no NaN)

_I64_MAX = int(np.iinfo(np.int64).max)
_I64_MIN = int(np.iinfo(np.int64).min)


class LabelInputError(ValueError):
    """Inputs to a label function are malformed."""


class TripleBarrier(NamedTuple):
    """Per-row triple-barrier outcome (MISSING / -1 / NaN where no label)."""

    label: NDArray[np.int8]  # +1 take-profit first, -1 stop first, 0 time exit
    exit_ns: NDArray[np.int64]  # barrier touch time, or t + horizon on a time exit
    ret: NDArray[np.float64]  # log return from mid_asof(t) to the exit


# ---------------------------------------------------------------- validation


def _path(ts: ArrayLike, mid: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    ts_a = np.asarray(ts)
    mid_a = np.asarray(mid, dtype=np.float64)
    if ts_a.ndim != 1 or mid_a.ndim != 1:
        raise LabelInputError("ts and mid must be 1-D arrays")
    if ts_a.dtype.kind != "i":
        raise LabelInputError(f"ts must be int64 nanoseconds, got dtype {ts_a.dtype}")
    if ts_a.shape[0] != mid_a.shape[0]:
        raise LabelInputError(f"ts and mid lengths differ: {ts_a.shape[0]} != {mid_a.shape[0]}")
    if ts_a.shape[0] == 0:
        raise LabelInputError("ts and mid are empty")
    ts_a = ts_a.astype(np.int64, copy=False)
    if np.any(np.diff(ts_a) < 0):
        raise LabelInputError("ts must be non-decreasing")
    if not np.all(np.isfinite(mid_a) & (mid_a > 0.0)):
        raise LabelInputError("mid must be finite and > 0 (found NaN, inf or a non-positive value)")
    return ts_a, mid_a


def _grid(t: ArrayLike) -> NDArray[np.int64]:
    t_a = np.asarray(t)
    if t_a.ndim != 1:
        raise LabelInputError("t must be a 1-D array")
    if t_a.dtype.kind != "i" and t_a.shape[0] > 0:
        raise LabelInputError(f"t must be int64 nanoseconds, got dtype {t_a.dtype}")
    t_a = t_a.astype(np.int64, copy=False)
    if np.any(np.diff(t_a) <= 0):
        raise LabelInputError("t must be strictly increasing")
    return t_a


def _span(value: int, name: str, t: NDArray[np.int64], sign: int) -> int:
    """Check a positive integer ns span and that t + sign * span stays inside int64."""
    if isinstance(value, bool):
        raise LabelInputError(f"{name} must be an integer number of ns, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise LabelInputError(f"{name} must be an integer number of ns, got {value!r}") from None
    if v <= 0:
        raise LabelInputError(f"{name} must be > 0, got {v}")
    if t.shape[0] > 0 and (int(t[-1]) + v > _I64_MAX if sign > 0 else int(t[0]) - v < _I64_MIN):
        raise LabelInputError(f"t {'+' if sign > 0 else '-'} {name} overflows int64")
    return v


# ---------------------------------------------------------------- fixed horizon


def forward_return(ts: ArrayLike, mid: ArrayLike, t: ArrayLike, horizon_ns: int) -> NDArray[np.float64]:
    """Return log(mid_asof(t + h) / mid_asof(t)); NaN where t < ts[0] or t + h > ts[-1].

    The fixed-time-horizon label of Lopez de Prado, AFML sec. 3.2.
    """
    ts_a, mid_a = _path(ts, mid)
    t_a = _grid(t)
    h = _span(horizon_ns, "horizon_ns", t_a, +1)
    end = t_a + h
    a = np.searchsorted(ts_a, t_a, side="right") - 1
    b = np.searchsorted(ts_a, end, side="right") - 1
    ok = (a >= 0) & (end <= ts_a[-1])
    out = np.full(t_a.shape[0], np.nan)
    out[ok] = np.log(mid_a[b[ok]] / mid_a[a[ok]])
    return out


def direction(ret: ArrayLike, tau: float) -> NDArray[np.int8]:
    """Return +1 where ret > tau, -1 where ret < -tau, 0 inside the dead zone, MISSING where ret is NaN.

    Three-class fixed-horizon label with a threshold (AFML sec. 3.2); pick tau >= dead_zone(...).
    """
    ret_a = np.asarray(ret, dtype=np.float64)
    if ret_a.ndim != 1:
        raise LabelInputError("ret must be a 1-D array")
    if not tau >= 0.0:  # also rejects NaN
        raise LabelInputError(f"tau must be >= 0, got {tau}")
    out = np.zeros(ret_a.shape[0], dtype=np.int8)
    out[ret_a > tau] = 1
    out[ret_a < -tau] = -1
    out[np.isnan(ret_a)] = MISSING
    return out


def dead_zone(maker_fee: float, taker_fee: float = 0.0, extra: float = 0.0, round_trip_maker: bool = True) -> float:
    """Return the smallest |log return| a round trip must beat to pay its fees, plus ``extra``.

    Fees are fractions of notional per fill (Bybit VIP0 perpetuals: maker 0.0002, taker 0.00055).
    ``round_trip_maker``: both fills passive, cost = 2 * maker_fee; otherwise a passive entry and
    an aggressive exit, cost = maker_fee + taker_fee. ``extra`` adds a margin (spread, slippage).
    The cost is linearised: the exact break-even log((1 + f_in) / (1 - f_out)) exceeds f_in + f_out
    by O(f^2) (about 8e-8 relative at Bybit's fees). A net rebate (negative fees) gives 0.
    """
    for name, v in (("maker_fee", maker_fee), ("taker_fee", taker_fee), ("extra", extra)):
        if not math.isfinite(v) or abs(v) >= 1.0:
            raise LabelInputError(f"{name} must be a finite fraction of notional, got {v}")
    if extra < 0.0:
        raise LabelInputError(f"extra must be >= 0, got {extra}")
    cost = 2.0 * maker_fee if round_trip_maker else maker_fee + taker_fee
    return max(0.0, cost + extra)


# ---------------------------------------------------------------- triple barrier


class _Barriers(NamedTuple):
    """What the triple-barrier kernel labels: the sample grid, each row's width, the barriers' reach."""

    t: NDArray[np.int64]
    vol: NDArray[np.float64]
    tp_mult: float
    sl_mult: float
    horizon_ns: int


@nb.njit(cache=True)
def _triple_barrier_kernel(ts: np.ndarray, mid: np.ndarray, rows: _Barriers, out: TripleBarrier) -> None:
    t, vol, tp_mult, sl_mult, horizon_ns = rows
    label, exit_ns, ret = out
    n = ts.shape[0]
    last_ts = ts[n - 1]
    a = -1  # last update with ts <= t[i]
    b = 0  # first update with ts > t[i] + horizon
    for i in range(t.shape[0]):
        ti = t[i]
        end = ti + horizon_ns
        while a + 1 < n and ts[a + 1] <= ti:
            a += 1
        while b < n and ts[b] <= end:
            b += 1
        label[i] = -128
        exit_ns[i] = -1
        ret[i] = np.nan
        v = vol[i]
        if a < 0 or not (v > 0.0) or not math.isfinite(v):
            continue
        p0 = mid[a]
        upper = tp_mult * v
        lower = -(sl_mult * v)
        hit = False
        for j in range(a + 1, b):  # the path: t[i] < ts[j] <= t[i] + horizon
            r = math.log(mid[j] / p0)
            if r >= upper:
                label[i] = 1
            elif r <= lower:
                label[i] = -1
            else:
                continue
            exit_ns[i] = ts[j]
            ret[i] = r
            hit = True
            break
        if hit or end > last_ts:  # no barrier before the data end: unknown outcome
            continue
        label[i] = 0
        exit_ns[i] = end
        ret[i] = math.log(mid[b - 1] / p0)


def triple_barrier(
    ts: ArrayLike,
    mid: ArrayLike,
    t: ArrayLike,
    vol: ArrayLike,
    tp_mult: float,
    sl_mult: float,
    horizon_ns: int,
) -> TripleBarrier:
    """Label each t by the first barrier its mid path touches (Lopez de Prado, AFML ch. 3.4).

    Barriers are +tp_mult * vol[i] and -sl_mult * vol[i] in log return from mid_asof(t[i]),
    touching counts as a hit; the path is every book update with t[i] < ts <= t[i] + horizon_ns,
    then a time exit (label 0) at t[i] + horizon_ns. A multiplier of ``math.inf`` disables that
    barrier. MISSING where vol[i] is not finite and > 0, t[i] < ts[0], or the horizon runs past
    ts[-1] before any barrier was touched.
    """
    ts_a, mid_a = _path(ts, mid)
    t_a = _grid(t)
    vol_a = np.asarray(vol, dtype=np.float64)
    if vol_a.ndim != 1 or vol_a.shape[0] != t_a.shape[0]:
        raise LabelInputError(f"vol must be 1-D with one entry per t: {vol_a.shape} vs ({t_a.shape[0]},)")
    for name, m in (("tp_mult", tp_mult), ("sl_mult", sl_mult)):
        if not m > 0.0:  # also rejects NaN
            raise LabelInputError(f"{name} must be > 0 (math.inf disables the barrier), got {m}")
    h = _span(horizon_ns, "horizon_ns", t_a, +1)
    m_rows = t_a.shape[0]
    label = np.empty(m_rows, dtype=np.int8)
    exit_ns = np.empty(m_rows, dtype=np.int64)
    ret = np.empty(m_rows, dtype=np.float64)
    out = TripleBarrier(label, exit_ns, ret)
    _triple_barrier_kernel(ts_a, mid_a, _Barriers(t_a, vol_a, float(tp_mult), float(sl_mult), h), out)
    return out


# ---------------------------------------------------------------- barrier width


def realized_vol(ts: ArrayLike, mid: ArrayLike, t: ArrayLike, window_ns: int) -> NDArray[np.float64]:
    """Return sqrt(sum of squared log mid changes) over updates with t - window < ts <= t.

    Trailing realized volatility (Andersen & Bollerslev 1998) to scale the barriers; NaN where
    t - window < ts[0]. Sums are differences of one running cumsum: monotone, so never negative.
    """
    ts_a, mid_a = _path(ts, mid)
    t_a = _grid(t)
    w = _span(window_ns, "window_ns", t_a, -1)
    r2 = np.zeros(ts_a.shape[0])
    r2[1:] = np.log(mid_a[1:] / mid_a[:-1]) ** 2
    csum = np.cumsum(r2)
    start = t_a - w
    lo = np.searchsorted(ts_a, start, side="right")  # first update inside the window (>= 1 when ok)
    hi = np.searchsorted(ts_a, t_a, side="right")  # one past the last update inside it
    ok = start >= ts_a[0]
    out = np.full(t_a.shape[0], np.nan)
    out[ok] = np.sqrt(csum[hi[ok] - 1] - csum[lo[ok] - 1])
    return out
