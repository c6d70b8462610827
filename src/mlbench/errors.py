"""Errors a user can act on.

Every error that reaches the command line names the problem and the fix; the CLI turns it into one
message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import re


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


#: The optional Python packages, by import name: (the name pip installs, the extra of pyproject.toml that has it)
OPTIONAL_PACKAGES = {
    "pycocotools": ("pycocotools", "detection"),
    "transformers": ("transformers", "language"), "tokenizers": ("tokenizers", "language"),
    "h5py": ("h5py", "language"), "peft": ("peft", "language"), "pyarrow": ("pyarrow", "language"),
    "safetensors": ("safetensors", "language"),
    "soundfile": ("soundfile", "speech"), "sentencepiece": ("sentencepiece", "speech"),
    "torchrec": ("torchrec", "recsys"),
    "onnx": ("onnx", "onnx"), "onnxruntime": ("onnxruntime", "onnx"), "onnxscript": ("onnxscript", "onnx"),
}


class MissingPackage(MlbenchError):
    """An optional Python package that a benchmark, backend or option needs is not installed."""


def explain(exc: BaseException) -> BaseException:
    """``exc``, or, when it is the import of an optional package failing, a MissingPackage naming the install."""
    if not isinstance(exc, ModuleNotFoundError):
        return exc
    # a DataLoader worker's error comes back as ModuleNotFoundError(its traceback's text), with no name
    named = exc.name or next(iter(re.findall(r"No module named '([\w.]+)'", str(exc))[-1:]), None)
    found = OPTIONAL_PACKAGES.get(named.split(".")[0]) if named else None
    if found is None:
        return exc
    pip, extra = found
    return MissingPackage(f"the Python package {pip} is not installed, and this run needs it",
                          f"pip install {pip} (or mlbench's '{extra}' extra: pip install -e '.[{extra}]' in the "
                          f"mlbench checkout; scripts/setup.sh installs every extra)")
