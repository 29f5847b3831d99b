"""Shared foundation: configuration, errors, time and CLI plumbing."""

from core.clock import Clock, ManualClock, SystemClock
from core.config import AppConfig, load_config
from core.errors import ConfigError, DataError, UnavailableError, UserError

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
