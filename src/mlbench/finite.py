"""Non-finite numbers where a result is made: a metric never scores NaN or infinite predictions.

A NaN score sorts like any other number in a ranking metric (DLRM's AUC ranked the NaN scores of every clicked
row first and reported 1.0000), and an argmax over NaN logits picks an index: the figure looks like a result.
:func:`require_finite` counts the non-finite values of the predictions about to be scored (numpy or torch, on
any device, vectorised) and raises :class:`NonFinite` naming them; the training harness ends the run as aborted,
an inference accuracy check fails, and nothing is recorded as valid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlbench.errors import RunAborted

HINT = ("the model produced NaN or infinite outputs: check the input data for NaN or infinite values (and the "
        "weights file, if one was given), or train with fp32 or a lower learning rate")


def finite_number(v: Any) -> bool:
    """Whether a value read from a user's file is a finite int or float (a JSON ``true`` is not a number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class NonFinite(RunAborted):
    """NaN or infinity where a result was to be made: a loss, predictions, a metric."""


def count_nonfinite(values: Any) -> tuple[int, int]:
    """(non-finite values, all values) of a numpy array or torch tensor (or anything numpy reads)."""
    if hasattr(values, "is_floating_point"):  # a torch tensor: counted where it lives
        if not values.is_floating_point():
            return 0, values.numel()
        import torch

        return int((~torch.isfinite(values)).sum()), values.numel()
    a = np.asarray(values)
    if not np.issubdtype(a.dtype, np.inexact):
        return 0, a.size
    return int(a.size - np.count_nonzero(np.isfinite(a))), a.size


def require_finite(values: Any, what: str, hint: str = HINT) -> None:
    """Raise :class:`NonFinite` when ``values`` (the ``what`` about to be scored) hold NaN or infinity."""
    bad, total = count_nonfinite(values)
    if bad:
        raise NonFinite(f"{bad} of {total} {what} are NaN or infinite: they are not scored, and the run has no "
                        "result", hint)


def nonfinite_weights(state: dict[str, Any]) -> list[str]:
    """The names of the floating-point tensors of a state dict holding NaN or infinity (one reduction each)."""
    return [name for name, t in state.items()
            if hasattr(t, "is_floating_point") and t.is_floating_point() and not bool(t.isfinite().all())]


def nonfinite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics whose value is NaN or infinite."""
    out = {}
    for name, value in metrics.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if not np.isfinite(v):
            out[name] = v
    return out
