"""The null backend: no model, empty responses. Measures what the harness itself costs.

By default it receives each batch as a real backend does: the SUT gathers (copies) the samples LoadGen asked
for out of the loaded sample store, and the backend reads them, so the data path every real run pays is
measured too. ``--null-skip-gather`` skips the gather and measures LoadGen and the SUT alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlbench.inference.backends.base import Backend


class NullBackend(Backend):
    name = "null"
    runs_model = False

    def __init__(self, cfg: Any, threads: int):
        super().__init__(cfg, threads)
        self.needs_input = not getattr(cfg, "null_skip_gather", False)
        self.touched = 0  # bytes of the batches received (read, as a real backend's input copy would)

    def prepare(self, task: Any, example: np.ndarray) -> None:
        if self.cfg.precision != "fp32":
            from mlbench.errors import ConfigError

            raise ConfigError("the null backend has no precision", "drop --precision or use another backend")

    def predict(self, x: Any) -> None:
        if x is None:
            return None
        for a in (x.values() if isinstance(x, dict) else (x,)):
            # the gather (store.batch) already copied every byte; read the batch's first and last element so
            # that the copy is used, as a backend's input binding would use it
            flat = a.reshape(-1)
            if flat.size:
                flat[0].item(), flat[-1].item()
            self.touched += a.nbytes
        return None

    def info(self) -> dict[str, Any]:
        return {"backend": "null", "threads": 0, "gather": self.needs_input, "bytes_received": self.touched,
                "note": "no model: responses are empty; "
                        + ("each batch is gathered from the sample store as a real backend receives it"
                           if self.needs_input else "no sample gather (--null-skip-gather): LoadGen and the SUT alone")}
