"""The lazy benchmark registry.

A benchmark is a package under ``mlbench.benchmarks`` with fixed module names:

- ``definition``: ``SIZES``, a dict of size name -> :class:`mlbench.definition.Benchmark`
- ``workload``: ``WORKLOAD``, a :class:`mlbench.training.workload.Workload` subclass (``mlbench train``)
- ``inference``: ``build_task(bench, opts)`` (``mlbench infer``, see :mod:`mlbench.inference.task`)
- ``prepare`` (optional): ``PrepareConfig`` (a keyword-only dataclass of options, light imports) and
  ``prepare(cfg, say)`` (``mlbench data prepare``)

Other modules (model, data, ...) are the benchmark's own business. Only ``definition`` is imported to list
benchmarks; the heavy modules load when used.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from mlbench.errors import UnknownNameError

# name -> package. Add a benchmark by adding its folder and one line here.
BENCHMARKS: dict[str, str] = {
    "resnet50": "mlbench.benchmarks.resnet50",
    "retinanet": "mlbench.benchmarks.retinanet",
    "bert": "mlbench.benchmarks.bert",
    "maskrcnn": "mlbench.benchmarks.maskrcnn",
    "dlrm": "mlbench.benchmarks.dlrm",
    "rnnt": "mlbench.benchmarks.rnnt",
    "llama31_8b": "mlbench.benchmarks.llama31_8b",
    "llama2_70b_lora": "mlbench.benchmarks.llama2_70b_lora",
    "whisper": "mlbench.benchmarks.whisper",
    "dummy": "mlbench.benchmarks.dummy",  # the harness tests' workload; hidden from lists and suites
}
HIDDEN = {"dummy"}


def did_you_mean(name: str, known: list[str] | tuple[str, ...], what: str) -> UnknownNameError:
    """An error for an unknown ``name`` that lists the known ones and the closest match."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else None
    known_s = ", ".join(sorted(known))
    return UnknownNameError(f"unknown {what} '{name}' (known: {known_s})", hint)


@dataclass(frozen=True)
class BenchmarkHandle:
    """One benchmark at one size, with its modules imported on first use."""

    name: str
    size: str
    package: str
    hparams: tuple[tuple[str, object], ...] = ()  # --hparam overrides of tunable hyper-parameters

    def module(self, part: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{part}")

    @property
    def definition(self):
        base = self.module("definition").SIZES[self.size]
        return base.tuned(dict(self.hparams)) if self.hparams else base

    def workload(self):
        """The training workload of this size (:class:`mlbench.training.workload.Workload`)."""
        if not self.has_module("workload"):
            from mlbench.errors import MlbenchError

            raise MlbenchError(f"benchmark '{self.name}' is inference only: it has no training workload",
                               f"run it with `mlbench infer {self.name}`")
        return self.module("workload").WORKLOAD(self.definition)

    @property
    def inference(self) -> ModuleType:
        return self.module("inference")

    def has_module(self, part: str) -> bool:
        return importlib.util.find_spec(f"{self.package}.{part}") is not None


def names(hidden: bool = False) -> list[str]:
    """Benchmark names; ``hidden`` includes the test-only ones."""
    return [n for n in BENCHMARKS if hidden or n not in HIDDEN]


def sizes(name: str) -> dict:
    """Size name -> Benchmark definition for one benchmark."""
    return importlib.import_module(f"{_package(name)}.definition").SIZES


def task_options() -> dict[str, str]:
    """The inference options that some benchmark's task reads (its definitions' ``task_options``): name -> help."""
    out: dict[str, str] = {}
    for name in BENCHMARKS:
        for bench in sizes(name).values():
            for option, help_text in bench.task_options.items():
                out.setdefault(option, help_text)
    return out


def canonical(name: str) -> str:
    """The registry name of ``name``, which may also be MLPerf Inference's name for it (a reference definition's
    ``inference_name``, e.g. ``llama3.1-8b``); unknown names are returned unchanged (``get`` then refuses them)."""
    if name in BENCHMARKS:
        return name
    for known in names():
        ref = sizes(known).get("reference")
        if ref is not None and ref.inference_name and ref.inference_name == name:
            return known
    return name


def _package(name: str) -> str:
    name = canonical(name)
    if name not in BENCHMARKS:
        raise did_you_mean(name, names(), "benchmark")
    return BENCHMARKS[name]


def get(name: str, size: str = "mini", hparams: dict | None = None) -> BenchmarkHandle:
    """The benchmark ``name`` at ``size`` (with ``hparams`` overrides, checked here); unknown names get a
    did-you-mean error."""
    name = canonical(name)
    package = _package(name)
    known_sizes = sizes(name)
    if size not in known_sizes:
        raise did_you_mean(size, list(known_sizes), f"size for {name}")
    handle = BenchmarkHandle(name, size, package, tuple(sorted((hparams or {}).items())))
    handle.definition  # noqa: B018 - invalid overrides fail here
    return handle
