"""Microstructure features and labels: pure numpy / numba kernels shared by training and live.

- ``catalog``: every feature's name, definition, window, unit and source (``python -m features catalog``)
- ``kernels``: the numba step functions (one per book update, one per trade); their memory is
  ``state``, the vector they write is ``vector``
- ``engine``: ``BatchFeatures`` (``core.records.Books`` / ``Trades`` of a recording) and ``OnlineFeatures``
  (one ``Book`` / ``Trade`` at a time)
- ``labels``: forward returns, direction with a dead zone, triple barrier (training only)
"""

from features.catalog import (
    FEATURES,
    INDEX,
    MAX_LOOKBACK_S,
    N_FEATURES,
    NAMES,
    Feature,
    feature_set_for,
    feature_set_id,
)
from features.engine import BatchFeatures, FeatureInputError, OnlineFeatures

__all__ = [
    "FEATURES",
    "INDEX",
    "MAX_LOOKBACK_S",
    "NAMES",
    "N_FEATURES",
    "BatchFeatures",
    "Feature",
    "FeatureInputError",
    "OnlineFeatures",
    "feature_set_for",
    "feature_set_id",
]
