"""The null backend: no model, empty responses. Measures what the harness itself costs."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlbench.inference.backends.base import Backend


class NullBackend(Backend):
    name = "null"
    needs_input = False

    def prepare(self, task: Any, example: np.ndarray) -> None:
        if self.cfg.precision != "fp32":
            from mlbench.errors import ConfigError

            raise ConfigError("the null backend has no precision", "drop --precision or use another backend")

    def predict(self, x: np.ndarray) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"backend": "null", "threads": 0, "note": "no model: responses are empty"}
