"""Backbones of the detection models: a light one for the small sizes, and ImageNet weights for torchvision's."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from mlbench.errors import DataError
from mlbench.training import checkpoint


def imagenet_state(env: str, name: str, file_name: str, url: Callable[[], str]) -> dict | None:
    """ImageNet weights of a torchvision backbone (``name``, published as ``file_name`` at ``url()``): the file
    that ``$env`` names, else a download checked against the hash in its file name, or None when ``$env`` is
    ``random``."""
    source = os.environ.get(env, "")
    if source == "random":
        return None
    if source:
        if not os.path.isfile(source):
            raise DataError(f"{env}={source}: no such file",
                            f"point it at torchvision's {file_name}, or unset it to download")
        return checkpoint.read(source, what=f"{env} file", hint=f"point it at torchvision's {file_name}")
    address = url()
    try:
        # check_hash: the file name carries the first digits of the sha256 (torchvision's convention).
        return torch.hub.load_state_dict_from_url(address, map_location="cpu", check_hash=True, progress=False,
                                                  weights_only=True)
    except Exception as exc:  # noqa: BLE001 - network and hash errors alike
        raise DataError(f"cannot get the {name} backbone weights from {address}: {exc}",
                        f"download the file elsewhere and set {env}=/path/to/it") from exc


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallBackbone(nn.Module):
    """Five stride-2 stages (w, 2w, 4w, 8w, 8w channels); an FPN on strides 8, 16 and 32 (P3-P5)."""

    def __init__(self, width: int, out_channels: int):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        w = width
        self.stem = nn.Sequential(_conv(3, w, 2), _conv(w, 2 * w, 2))  # stride 4
        self.c3 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 1))  # stride 8
        self.c4 = nn.Sequential(_conv(4 * w, 8 * w, 2), _conv(8 * w, 8 * w, 1))  # stride 16
        self.c5 = nn.Sequential(_conv(8 * w, 8 * w, 2), _conv(8 * w, 8 * w, 1))  # stride 32
        self.fpn = FeaturePyramidNetwork([4 * w, 8 * w, 8 * w], out_channels)
        self.out_channels = out_channels  # what torchvision's detection heads read

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        return self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)]))
