"""What defines a benchmark: a typed, frozen record per size.

Sizes are small derivations of the reference definition (``dataclasses.replace``), so a quality
target or a hyper-parameter lives in exactly one place; reports and checks import it from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SIZE_NAMES = ("reference", "mini", "tiny")


@dataclass(frozen=True)
class ModelFile:
    """A model file MLCommons publishes for a benchmark's inference (its reference README's model table), which
    ``mlbench infer --weights`` accepts: its name, format, the accuracy the reference measured with it, where
    it is published."""

    file: str  # e.g. "resnet50_v1.onnx"
    format: str  # e.g. "ONNX, opset 8 or 11 (from TensorFlow)"
    accuracy: str  # e.g. "top-1 76.456%"
    where: str  # the address(es) MLCommons gives

    def text(self) -> str:
        return f"{self.file} ({self.format}; {self.accuracy}; {self.where})"


@dataclass(frozen=True, kw_only=True)
class Benchmark:
    """One benchmark at one size."""

    name: str  # registry name, e.g. "resnet50"
    size: str  # reference | mini | tiny
    mlperf_name: str  # MLPerf's name, logged as submission_benchmark (e.g. "resnet")
    task: str  # e.g. "image classification"
    description: str
    ruleset: str  # mlperf-logging training ruleset the log follows, e.g. "4.0.0"
    division: str  # closed (the MLPerf definition) or open (anything smaller)
    dataset: str
    metric: str  # name of the quality metric, e.g. "top1" (a key of the workload's evaluate() result)
    target: float  # quality target on ``metric``
    target_source: str  # where the target comes from, in words
    eval_every_epochs: int  # evaluation cadence in epochs (used when ``eval_every_samples`` is 0)
    runs_required: int  # runs MLPerf asks for a score
    max_epochs: int  # epoch budget: a run that has not reached the target by then is aborted
    higher_is_better: bool = True  # False for error rates (WER): the target is reached at or below it
    eval_every_samples: int = 0  # evaluation cadence in training samples (BERT); 0 means by epochs
    max_samples: int = 0  # budget in training samples (BERT); 0 means ``max_epochs`` alone
    batch_size: int  # default per-process batch size
    hparams: dict[str, Any] = field(default_factory=dict)  # the recipe's hyper-parameters
    input_shape: tuple[int, ...] = ()  # one sample, channels first (for warm-up and inference)
    num_classes: int = 0
    # Inference (MLPerf inference rules); 0 / None where the benchmark has no inference size.
    inference_target: float | None = None  # 99% of the FP32 reference accuracy
    inference_target_source: str = ""
    inference_targets: dict[str, float] = field(default_factory=dict)  # e.g. {"99": .., "99.9": ..}
    inference_metric: str = ""  # the accuracy metric inference is scored on; "" means ``metric``
    performance_sample_count: int = 0
    server_latency_ms: float | None = None
    loadgen_model_name: str = ""  # the model name in LoadGen's mlperf.conf
    inference_name: str = ""  # MLPerf Inference's name for it (its results folder, e.g. "resnet"); "" means ``name``
    inference_name_has_target: bool = False  # MLPerf Inference adds the accuracy target: bert-99, bert-99.9
    # language models: LoadGen's model per mlbench scenario where it is not loadgen_model_name (e.g. Interactive,
    # which LoadGen runs as Server under the interactive model's bounds; SingleStream: the edge model)
    loadgen_scenario_models: dict[str, str] = field(default_factory=dict)
    # inference options only this benchmark's task reads, name -> help: each is an `mlbench infer` option (a
    # string, or None when not given) that reaches the task in TaskOptions.extra (see docs/ARCHITECTURE.md)
    task_options: dict[str, str] = field(default_factory=dict)
    model_files: tuple[ModelFile, ...] = ()  # reference: the published model files --weights accepts
    notes: str = ""
    tunable: tuple[str, ...] = ()  # keys of ``hparams`` a run may change (``--hparam KEY=VALUE``; open division)
    log_progress_in: str = "epoch_num"  # MLPerf log metadata of an evaluation: epoch_num or samples_count (LLMs)
    in_suite: bool = True  # mini: part of `mlbench run` (False while its target is not yet set from measured runs)

    @property
    def is_reference(self) -> bool:
        return self.size == "reference"

    def derive(self, **changes: Any) -> Benchmark:
        """A variant of this definition (a size) with some fields changed."""
        if "hparams" in changes:
            changes["hparams"] = {**self.hparams, **changes["hparams"]}
        return dataclasses.replace(self, **changes)

    def tuned(self, overrides: dict[str, Any]) -> Benchmark:
        """This definition with ``overrides`` of its tunable hyper-parameters, each checked against the type of
        the value it replaces (a whole number stays whole; every number finite); ConfigError otherwise."""
        import math

        from mlbench.errors import ConfigError

        changed = {}
        for key, value in overrides.items():
            if key not in self.tunable:
                known = ", ".join(self.tunable) or "none"
                raise ConfigError(f"invalid --hparam {key}: {self.name} {self.size} has no tunable hyper-parameter "
                                  f"of that name (tunable: {known})", "give one of the tunable names")
            old = self.hparams[key]
            if isinstance(old, bool) or not isinstance(old, (int, float)):
                raise ConfigError(f"invalid --hparam {key}: only numbers can be changed", "leave it out")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"invalid --hparam {key}={value!r}: it must be a finite number",
                                  f"give a number like the definition's {old}")
            if isinstance(old, int) and not float(value).is_integer():
                raise ConfigError(f"invalid --hparam {key}={value!r}: it must be a whole number",
                                  f"give a whole number like the definition's {old}")
            changed[key] = type(old)(value)
        return self.derive(hparams=changed) if changed else self

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
