"""The progress line MLPerf users know from the torchvision reference scripts.

``Epoch: [0]  [  20/36571]  eta: 6:17:02  lr: 0.000000  loss: 2.1944 (2.2521)  time: 0.4317  data: 0.0003``
followed by ``max mem: N`` (MB) on CUDA. Each meter shows the median of a 20-step window and, in
parentheses, the average since the start of the epoch. When the output is a terminal a one-line
progress bar is redrawn between progress lines.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch


class Meter:
    """A windowed median and a running average of one scalar."""

    def __init__(self, window: int = 20, fmt: str = "{median:.4f} ({avg:.4f})"):
        self.window: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        self.window.append(value)
        self.total += value * n
        self.count += n

    def extend(self, values: list[float]) -> None:
        for v in values:
            self.update(v)

    @property
    def median(self) -> float:
        if not self.window:
            return 0.0
        s = sorted(self.window)
        return s[len(s) // 2]

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def value(self) -> float:
        return self.window[-1] if self.window else 0.0

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, value=self.value)


class MetricLogger:
    """Meters for one epoch and the loop that prints them every ``print_every`` steps."""

    def __init__(self, print_fn: Callable[[str], None] = print, delimiter: str = "  ",
                 bar: bool | None = None):
        self.meters: dict[str, Meter] = {}
        self.print_fn = print_fn
        self.delimiter = delimiter
        self.bar = sys.stdout.isatty() if bar is None else bar
        self.on_print: Callable[[int], None] | None = None  # called with the step index before printing
        self.rate: tuple[str, float] | None = None  # (unit, amount per step): e.g. ("tokens/s", tokens a step)

    def update(self, **values: float) -> None:
        for name, v in values.items():
            self._meter(name).update(float(v))

    def extend(self, **values: list[float]) -> None:
        """Several steps' values at once (the harness reads device tensors only at print steps)."""
        for name, vs in values.items():
            self._meter(name).extend(vs)

    def _meter(self, name: str) -> Meter:
        if name not in self.meters:
            self.meters[name] = Meter(fmt="{value:.6f}" if name == "lr" else "{median:.4f} ({avg:.4f})")
        return self.meters[name]

    def __str__(self) -> str:
        return self.delimiter.join(f"{k}: {m}" for k, m in self.meters.items())

    def log_every(self, iterable: Iterable[Any], print_every: int, header: str,
                  total: int | None = None) -> Iterator[Any]:
        """Yield from ``iterable`` and print the progress line every ``print_every`` steps and at the end."""
        total = len(iterable) if total is None else total  # type: ignore[arg-type]
        width = len(str(total))
        step_time = Meter(fmt="{avg:.4f}")
        data_time = Meter(fmt="{avg:.4f}")
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        start = end = time.perf_counter()
        i = 0
        for obj in iterable:
            data_time.update(time.perf_counter() - end)
            yield obj
            step_time.update(time.perf_counter() - end)
            if i % print_every == 0 or i == total - 1:
                if self.on_print is not None:
                    self.on_print(i)
                eta = datetime.timedelta(seconds=int(step_time.avg * max(0, total - i - 1)))
                parts = [header, f"[{i:{width}d}/{total}]", f"eta: {eta}", str(self),
                         f"time: {step_time}", f"data: {data_time}"]
                if self.rate and step_time.median > 0:
                    parts.append(f"{self.rate[0]}: {self.rate[1] / step_time.median:.0f}")
                if cuda:
                    parts.append(f"max mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}")
                self._clear_bar()
                self.print_fn(self.delimiter.join(p for p in parts if p))
            elif self.bar:
                self._draw_bar(i + 1, total, header)
            i += 1
            end = time.perf_counter()
        self._clear_bar()
        took = datetime.timedelta(seconds=int(time.perf_counter() - start))
        self.print_fn(f"{header} Total time: {took} ({(time.perf_counter() - start) / max(i, 1):.4f} s / it)")

    def _draw_bar(self, done: int, total: int, header: str) -> None:
        n = 30 * done // max(total, 1)
        sys.stdout.write(f"\r{header} [{'#' * n}{'.' * (30 - n)}] {done}/{total}")
        sys.stdout.flush()

    def _clear_bar(self) -> None:
        if self.bar:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
