"""Inference backends behind one small interface (:class:`~mlbench.inference.backends.base.Backend`).

A new backend (OpenVINO, TensorRT) is one more module and one more line in ``BACKENDS``; modules are
imported only when chosen, so onnxruntime is never loaded by a pytorch run.
"""

from __future__ import annotations

import importlib

from mlbench.inference.backends.base import Backend

BACKENDS: dict[str, str] = {
    "pytorch": "mlbench.inference.backends.pytorch:PyTorchBackend",
    "onnxruntime": "mlbench.inference.backends.onnxrt:OnnxRuntimeBackend",
    "null": "mlbench.inference.backends.null:NullBackend",
}


def get(name: str) -> type[Backend]:
    """The backend class called ``name``; unknown names get a did-you-mean error."""
    if name not in BACKENDS:
        from mlbench.registry import did_you_mean

        raise did_you_mean(name, list(BACKENDS), "backend")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)
