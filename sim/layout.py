"""The simulator kernel's state and parameter layout: named slots of flat numpy arrays.

numba compiles these values into the cached kernel and does not notice a change here (numba
caches are invalidated by edits of the cached function's own file only): after editing this
module, delete ``sim/__pycache__`` or touch ``kernel.py``.
"""

from __future__ import annotations

# int state slots
T_NS = 0
BEST_BID = 1
BEST_ASK = 2
BASE = 3  # tick of book index 0
UPDATE_ID = 4
TRADE_COUNT = 5
REFORM_SIDE = 6  # 0 none, +1 the bid must follow the ask up, -1 the ask must follow the bid down
REFORM_AT = 7
NEXT_PUBLISH = 8
N_PUB_BID = 9
N_PUB_ASK = 10
LAST_TRADE_TICK = 11
LAST_TRADE_DIR = 12
SNAPSHOT_DUE = 13
META_NET = 14  # sum of the signs of the active metaorders
MAX_META = 16  # metaorders active at once at most (a start beyond is dropped)
META_END = 15  # MAX_META slots: end time (ns) of each active metaorder, 0 when free
META_SIGN = META_END + MAX_META  # MAX_META slots: its sign, +1 buy / -1 sell
N_INT = META_SIGN + MAX_META

# float state slots
REGIME = 0
N_FLOAT = 1

# parameter slots (float64 array)
(
    P_Q,
    P_Q_SIGMA,
    P_LIMIT,
    P_REFILL,
    P_CANCEL,
    P_CANCEL_IMB,
    P_ORDER_MED,
    P_ORDER_SIGMA,
    P_MARKET,
    P_MARKET_IMB,
    P_TRADE_MED,
    P_TRADE_SIGMA,
    P_TRADE_MAX,
    P_DEPTH_TICKS,
    P_DEPTH_OCC,
    P_DEPTH_MED,
    P_DEPTH_SIGMA,
    P_DEPTH_RATE,
    P_PULLBACK,
    P_REFORM_NS,
    P_REGIME_VOL,
    P_REGIME_HL_NS,
    P_CADENCE_NS,
    P_LATENCY_NS,
    P_DEPTH,
    P_PX_MULT,
    P_PX_DEC,
    P_QTY_DEC,
    P_AWAY_SCALE,
    P_META_RATE,
    P_META_DUR_NS,
    P_META_TAIL,
    P_META_MAX_NS,
    P_META_TILT,
) = range(34)
N_PARAM = 34

# message kinds in the output
MSG_SNAPSHOT = 0
MSG_DELTA = 1
MSG_TRADE = 2
