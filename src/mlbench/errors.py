"""Errors a user can act on.

Every error that reaches the command line names the problem and the fix; the CLI turns it into one
message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations


class MlbenchError(Exception):
    """A problem the user can fix. ``hint`` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        if hint is None:
            message, hint = self._unwrap_worker(message)
        super().__init__(message)
        self.message = message
        self.hint = hint

    @classmethod
    def _unwrap_worker(cls, message: str) -> tuple[str, str | None]:
        """torch's DataLoader re-raises an error of a worker process as ``cls(text)``, the text holding the
        worker's whole traceback ("Caught DataError in DataLoader worker process 0. Original Traceback ...");
        keep the original message and hint, which end that text."""
        marker = f"\n{cls.__module__}.{cls.__qualname__}: "
        if not message.startswith("Caught ") or "Original Traceback" not in message or marker not in message:
            return message, None
        original = message.rsplit(marker, 1)[1].rstrip("\n")
        text, _, hint = original.partition("\n  fix: ")
        return text, hint or None

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
