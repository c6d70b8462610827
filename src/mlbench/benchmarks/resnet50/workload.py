"""ResNet-50 training: the shared classification workload (SGD, label smoothing, warm-up + polynomial decay,
top-1) on this benchmark's model and data."""

from __future__ import annotations

import torch

from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.classification import ClassificationWorkload


class ResNetWorkload(ClassificationWorkload):
    def build_model(self) -> torch.nn.Module:
        from mlbench.benchmarks.resnet50.model import build_model

        return build_model(self.bench)

    def build_data(self, spec: DataSpec) -> DataBundle:
        from mlbench.benchmarks.resnet50.data import build_data

        return build_data(self.bench, spec)


WORKLOAD = ResNetWorkload
