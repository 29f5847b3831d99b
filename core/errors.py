"""Errors a user can act on: they print as one line and exit non-zero, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration file is missing, unreadable or invalid."""


class DataError(UserError):
    """Market data is corrupt, inconsistent or missing."""

    exit_code = 3


class UnavailableError(UserError):
    """A service the command needs (exchange, warehouse, registry) cannot be reached."""

    exit_code = 4
