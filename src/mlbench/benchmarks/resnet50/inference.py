"""ResNet-50 inference pre/post-processing (used by ``mlbench infer``).

Pre-processing is the evaluation transform of ``data`` (resize 256, centre crop 224, normalise) for the
reference size and the normalised 28x28 image for mini/tiny. Post-processing turns logits into the
class index that LoadGen logs; accuracy is top-1 against the labels.
"""

from __future__ import annotations

import numpy as np
import torch

from mlbench.benchmarks.base import Benchmark


def postprocess(logits: torch.Tensor) -> np.ndarray:
    """Predicted class per sample as int32 (what goes into mlperf_log_accuracy.json)."""
    return logits.argmax(1).to(torch.int32).cpu().numpy()


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float((np.asarray(predicted) == np.asarray(labels)).mean()) if len(labels) else 0.0


def metric_name(bench: Benchmark) -> str:
    return bench.metric
