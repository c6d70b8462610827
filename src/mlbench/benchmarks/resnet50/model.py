"""Models: torchvision's ResNet-50 (v1.5: stride in the 3x3 convolution) and a small ResNet for mini/tiny."""

from __future__ import annotations

import torch
from torch import nn

from mlbench.definition import Benchmark


def build_model(bench: Benchmark) -> nn.Module:
    if bench.is_reference:
        import torchvision

        model = torchvision.models.resnet50(weights=None, num_classes=bench.num_classes)
        # As the MLPerf reference: the last batch-norm of each residual branch starts at zero.
        for m in model.modules():
            if isinstance(m, torchvision.models.resnet.Bottleneck):
                nn.init.zeros_(m.bn3.weight)
        return model
    return SmallResNet(in_channels=bench.input_shape[0], num_classes=bench.num_classes,
                       width=bench.hparams["width"])


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class SmallResNet(nn.Module):
    """Stem, then three stages of one basic block each (width, 2x, 4x channels; strides 1, 2, 2)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.layers = nn.Sequential(BasicBlock(width, width, 1), BasicBlock(width, 2 * width, 2),
                                    BasicBlock(2 * width, 4 * width, 2))
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
