"""``vllm`` engine: a thin wrapper over vLLM's offline ``LLM`` (GPU machines; NOT tested by mlbench's tests, which
run where vLLM is not installed). Without vLLM it refuses at once with the install to run.

Requests are generated in batches of up to ``batch_size`` (taken as the ``transformers`` engine's static mode
takes them, ``QueuedEngine._batch_loop``) with greedy sampling (temperature 0, at least one
token, as MLPerf's reference SUT); vLLM schedules them with its own continuous batching inside each call. The
first token is reported when the request's output arrives (vLLM's offline API does not stream), so TTFT from
this engine is an upper bound: use a vLLM server and the ``openai`` engine to measure TTFT properly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbench.errors import MlbenchError
from mlbench.inference.engines.base import QueuedEngine
from mlbench.inference.generation import EngineSettings, GenerationCallbacks, GenerationRequest

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class VllmEngine(QueuedEngine):
    name = "vllm"

    def __init__(self, model_dir: str | Path | None, settings: EngineSettings):
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise MlbenchError("the vllm engine needs vLLM, which is not installed",
                               "pip install vllm (on a GPU machine), or use --backend transformers") from exc
        if model_dir is None:
            raise MlbenchError("the vllm engine needs a model directory", "pass --model-dir DIR")
        super().__init__(settings)
        self.model_dir = Path(model_dir)
        self.llm: Any = None

    def start(self, callbacks: GenerationCallbacks) -> None:
        from vllm import LLM

        self.callbacks = callbacks
        self.llm = LLM(model=str(self.model_dir), dtype=DTYPES.get(self.settings.precision, "auto"),
                       trust_remote_code=False, max_model_len=self.settings.context_length)
        self._start_thread(lambda: self._batch_loop(self._run_batch), "mlbench-vllm")

    def info(self) -> dict[str, Any]:
        import vllm

        return {"backend": self.name, "engine": self.name, "vllm": vllm.__version__, "precision": self.settings.precision,
                "batch_size": self.settings.batch_size,
                "batching": "vLLM's continuous batching within each call of up to batch_size requests; first token "
                            "reported with the whole output (offline API)"}

    def _run_batch(self, batch: list[GenerationRequest]) -> None:
        from vllm import SamplingParams

        params = [SamplingParams(temperature=0.0, max_tokens=r.max_new_tokens, min_tokens=1) for r in batch]
        prompts = [{"prompt_token_ids": list(r.prompt)} for r in batch]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        for r, out in zip(batch, outputs, strict=True):
            ids = list(out.outputs[0].token_ids)
            self.callbacks.on_first_token(r.id, ids[:1])
            self._done(r.id, ids)
