"""``InferConfig``: everything ``mlbench infer`` needs, saved as config.json in the run directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mlbench import registry
from mlbench.config import PEAK_TFLOPS_HELP, data_dir_problem, opt
from mlbench.inference import generation

SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream", "Interactive")  # Interactive: language models
MODES = ("performance", "accuracy", "submission")
BACKENDS = ("pytorch", "onnxruntime", "null", *generation.ENGINES)  # the engines run language models
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
MLPERF_MIN_DURATION_S = 600  # mlperf.conf's min_duration for every scenario
# LoadGen plans every query of a test before it starts: per sample a few hundred bytes of bookkeeping in
# LoadGen and in the SUT's Python (QuerySample objects, response records, latencies).
LOADGEN_BYTES_PER_SAMPLE = 256


@dataclass(kw_only=True)
class CommonInferConfig:
    """The options of every inference run; ``InferConfig`` adds the benchmarks' own (their ``task_options``)."""

    benchmark: str = opt(registry.names()[0], "benchmark name (see `mlbench list`)")
    size: str = opt("mini", "benchmark size", choices=("reference", "mini", "tiny"))
    scenario: str = opt("Offline", "MLPerf scenario (Interactive: language models, LoadGen's Server under the "
                        "interactive TTFT/TPOT bounds; MultiStream: not for language models)", choices=SCENARIOS)
    mode: str = opt("performance", "performance, accuracy (whole dataset, scored) or submission (both)",
                    choices=MODES)
    target: str | None = opt(None, "accuracy target of benchmarks that have several, e.g. 99 or 99.9 (MLPerf's "
                             "<name>-99 and <name>-99.9); default: the first (see `mlbench list`)")
    backend: str = opt("pytorch", "inference backend; language models: a generation engine (transformers: in-process, "
                       "the default, which pytorch also means for them; vllm: when vLLM is installed; openai: an "
                       "OpenAI-compatible server already running, see --endpoint; speech-to-text: pytorch, null or "
                       "openai, the server's /v1/audio/transcriptions)", choices=BACKENDS)
    device: str = opt("cpu", "cpu, cuda or cuda:N (auto: cuda when available)")
    precision: str = opt("fp32", "numeric precision: bf16/fp16 autocast (pytorch), int8 static "
                         "quantization (onnxruntime)", choices=PRECISIONS)
    batch_size: int | None = opt(None, "largest batch the SUT runs; default: per scenario and backend", min=1,
                                 max=65536)
    max_wait_ms: float = opt(0.0, "Server: longest wait to fill a batch, in ms (0: a free worker takes what is "
                             "pending, so batches grow only under load)", min=0.0, max=60_000.0)
    batching: str | None = opt(None, "language models, --backend transformers: continuous (a request that ends frees "
                               "its slot for a waiting one at once; the default where the model and transformers "
                               "allow it) or static (batches refilled only when the whole batch ends)",
                               choices=("continuous", "static"))
    workers: int | None = opt(None, "SUT worker threads running batches (Server, Offline); default: 1, or 2 "
                              "when the benchmark post-processes on the host (e.g. decoding and NMS, which "
                              "then overlap the other worker's network)", min=1, max=256)
    threads: int | None = opt(None, "intra-op threads of the backend; default: cores / workers", min=1,
                               max=1024)
    null_skip_gather: bool = opt(False, "null backend: skip the sample gather, measuring LoadGen and the SUT "
                                  "alone (by default it gathers each batch, as a real backend receives it)")
    channels_last: bool = opt(True, "pytorch: channels_last memory format for conv nets")
    compile: bool = opt(False, "pytorch: torch.compile the model, every batch size before the test starts "
                              "(partial batches padded; on a CPU with inductor's freezing)")
    cuda_graphs: bool = opt(False, "pytorch on a CUDA device: replay the model from CUDA graphs captured before "
                            "the test, one per power-of-two batch size up to --batch-size (a batch runs in the "
                            "smallest that holds it); inputs of a fixed shape per sample only")
    weights: str | None = opt(None, "model weights file: reference size, a PyTorch file or an .onnx (onnxruntime); "
                               "mini/tiny, default: the cached model of mlbench train; random: throughput only")
    data_dir: str | None = opt(None, "dataset root; default: the size's built-in or standard location",
                               check=data_dir_problem)
    output_dir: str = opt("runs", "where run directories are created")
    quick: bool = opt(False, "short duration and query counts for development; never valid for submission")
    duration_s: float = opt(5.0, "--quick: minimum test duration in seconds", min=0.1,
                            max=86_400.0)
    target_qps: float | None = opt(None, "Server target QPS / Offline expected QPS; default: estimated "
                                   "from the warm-up (Server: half of it); at most what LoadGen can hold in memory "
                                   "over the minimum duration (600 s; --duration-s with --quick)", min=0.001,
                                   max=1e9)
    target_latency_ms: float | None = opt(None, "override the Server latency bound (makes the run invalid)",
                                          min=0.001, max=3_600_000.0)
    user_conf: str | None = opt(None, "a user.conf in LoadGen's format, applied after mlperf.conf; kept")
    max_samples: int | None = opt(None, "accuracy mode: score only the first N samples (invalid)", min=1,
                                  max=10**9)
    peak_tflops: float | None = opt(None, PEAK_TFLOPS_HELP, min=1e-6, max=1e6)
    find_peak: bool = opt(False, "Server (Interactive): search the highest VALID target QPS, then confirm it "
                          "(language models: reported as tokens/s)")
    compliance: bool = opt(False, "also run the audit tests TEST01 and TEST04 and report pass/fail")
    trace: bool = opt(False, "enable LoadGen's trace log (mlperf_log_trace.json)")
    offline: bool = opt(False, "never download anything; fail with a clear error instead")
    train_if_missing: bool = opt(True, "mini/tiny: train the model first when no checkpoint is cached")
    # --backend openai: a server already running generates; mlbench measures (inference/engines/openai_engine.py)
    endpoint: str | None = opt(None, "--backend openai: the OpenAI-compatible server's base URL, e.g. "
                               "http://127.0.0.1:8000 (its /v1/completions is streamed; speech-to-text: each sample "
                               "is posted as a WAV file to its /v1/audio/transcriptions)")
    api_model: str | None = opt(None, "--backend openai: the model name the server serves (GET /v1/models)")
    concurrency: int | None = opt(None, "--backend openai: most requests in flight at once; default: the "
                                  "scenario's batch size (--batch-size)", min=1, max=100_000)
    api_key_env: str | None = opt(None, "--backend openai: the environment variable holding the API key "
                                  "(default: OPENAI_API_KEY when set); the key is never written to any file")
    request_timeout: float = opt(60.0, "--backend openai: seconds without a byte from the server before a "
                                 "request counts as timed out (and the run as INVALID; a transcription, answered in "
                                 "one piece, must come within it whole)", min=0.001, max=86_400.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Options that only some benchmarks' tasks read, declared by their definitions (``task_options``): each is a field
# of InferConfig (an `mlbench infer` option; None when not given), passed in TaskOptions.extra when given (a task
# that does not list one in its ``options`` refuses it, see inference.task.build).
TASK_OPTIONS = tuple(registry.task_options())
#: The options of the ``openai`` generation engine, passed in its settings.options.
OPENAI_OPTIONS = ("endpoint", "api_model", "concurrency", "api_key_env", "request_timeout")
InferConfig = dataclasses.make_dataclass(
    "InferConfig", [(name, str | None, opt(None, help_text)) for name, help_text in registry.task_options().items()],
    bases=(CommonInferConfig,), kw_only=True)
InferConfig.__module__ = __name__
InferConfig.__doc__ = """Options of one inference run. None means: chosen automatically (and recorded as chosen)."""


def check(cfg: InferConfig) -> InferConfig:
    """Checks across fields and on the file system, before anything runs (ConfigError, exit code 2)."""
    from pathlib import Path

    from mlbench.errors import ConfigError

    if cfg.user_conf and not Path(cfg.user_conf).is_file():
        raise ConfigError(f"user.conf not found: {cfg.user_conf}", "pass an existing file in LoadGen's conf format")
    if cfg.null_skip_gather and cfg.backend != "null":
        raise ConfigError("--null-skip-gather applies to the null backend only", "add --backend null, or drop it")
    if cfg.cuda_graphs and cfg.backend != "pytorch":
        raise ConfigError("--cuda-graphs applies to the pytorch backend only", "add --backend pytorch, or drop it")
    if cfg.cuda_graphs and cfg.compile:
        raise ConfigError("--cuda-graphs and --compile together are not supported",
                          "use one of them (torch.compile's own CUDA graphs are not offered)")
    openai = [f"--{k.replace('_', '-')}" for k in OPENAI_OPTIONS if getattr(cfg, k) is not None
              and (k != "request_timeout" or cfg.request_timeout != 60.0)]
    if cfg.backend == "openai" and not (cfg.endpoint and cfg.api_model):
        raise ConfigError("--backend openai needs the server's URL and model name",
                          "add --endpoint URL (e.g. http://127.0.0.1:8000) and --api-model NAME")
    if cfg.batching and cfg.backend not in ("pytorch", "transformers"):
        raise ConfigError(f"--batching applies to --backend transformers only, not {cfg.backend}",
                          "drop --batching (the other engines batch on their own)")
    if cfg.backend != "openai" and openai:
        raise ConfigError(f"{', '.join(openai)} apply to --backend openai only", "add --backend openai, or drop them")
    if cfg.find_peak and cfg.scenario not in ("Server", "Interactive"):
        raise ConfigError("--find-peak searches the Server (or Interactive) scenario's QPS", "add --scenario Server")
    if cfg.compliance and cfg.mode == "accuracy":
        raise ConfigError("--compliance compares with a performance test", "use --mode performance or submission")
    if cfg.max_samples and cfg.mode == "performance":
        raise ConfigError("--max-samples limits accuracy mode only", "use --mode accuracy or submission")
    if cfg.target_qps is not None:
        check_loadgen_memory(cfg.target_qps, cfg.duration_s if cfg.quick else MLPERF_MIN_DURATION_S)
    return cfg


def loadgen_sample_limit() -> int:
    """The most samples one LoadGen test can plan in this machine's memory."""
    import psutil

    return int(psutil.virtual_memory().total // LOADGEN_BYTES_PER_SAMPLE)


def check_loadgen_memory(target_qps: float, min_duration_s: float) -> None:
    """ConfigError when ``target_qps`` x ``min_duration_s`` samples would not fit in memory (LoadGen plans
    them all before the test starts, and would die of it)."""
    from mlbench.errors import ConfigError

    samples, limit = target_qps * min_duration_s, loadgen_sample_limit()
    if samples > limit:
        raise ConfigError(
            f"invalid value for 'target_qps': {target_qps:g} x {min_duration_s:g} s minimum duration = "
            f"{samples:.3g} samples, more than LoadGen can hold in this machine's memory (at most {limit:.3g} "
            f"samples of ~{LOADGEN_BYTES_PER_SAMPLE} bytes each)",
            f"give --target-qps <= {limit / min_duration_s:.4g}, or drop it to use the estimate from the warm-up")
