"""Errors a user can act on.

Every error that reaches the command line names the problem and the fix; the CLI turns it into one
message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations


class MlbenchError(Exception):
    """A problem the user can fix. ``hint`` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(MlbenchError):
    """An invalid configuration value; raised before anything runs (exit code 2)."""

    exit_code = 2


class UnknownNameError(ConfigError):
    """An unknown benchmark, size, scenario or backend name."""


class DataError(MlbenchError):
    """Missing, corrupt or mis-shaped data."""


class RunAborted(MlbenchError):
    """A run that stopped without a valid result (non-finite loss, interrupted, crashed)."""
