"""Shared foundation: configuration, errors, time and CLI plumbing."""

import os

from core.clock import Clock, ManualClock, SystemClock
from core.config import AppConfig, load_config
from core.errors import ConfigError, DataError, UnavailableError, UserError

# OpenMP threads (LightGBM's, XGBoost's, scikit-learn's) sleep while they wait for work instead of
# spinning, unless the environment says otherwise. Read once, when a library's OpenMP runtime loads:
# every command imports this package before any of them. A spinning thread burns a core another
# process needs (the paper runner beside a retrain on the box; the test workers): a training run on
# the 2-core machine under load took 7.5-9.8 CPU-s spinning, 6.6-6.7 passive, and no longer on a
# quiet machine (4.1-4.3 s against 4.6-4.8; docs/operations.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = [
    "AppConfig",
    "Clock",
    "ConfigError",
    "DataError",
    "ManualClock",
    "SystemClock",
    "UnavailableError",
    "UserError",
    "load_config",
]
