"""``openai`` engines: the requests go to an OpenAI-compatible server already running (vLLM, SGLang, TGI,
llama.cpp, ``transformers serve``), streamed from its ``/v1/completions`` (:class:`OpenAIServerEngine`, language
models) or posted as WAV files to its ``/v1/audio/transcriptions`` (:class:`OpenAITranscriptionEngine`, speech);
the server generates, mlbench measures (the client: :mod:`mlbench.inference.engines.openai_api`).

Options (``EngineSettings.options``, from ``mlbench infer``'s flags): ``endpoint`` (the server's base URL),
``api_model`` (the model name the server serves), ``concurrency`` (requests in flight; default: the scenario's
batch size), ``api_key_env`` (the environment variable holding the API key; default OPENAI_API_KEY when set),
``request_timeout`` (seconds without a byte before a request counts as timed out). The model directory gives the
tokenizer only (prompts are sent as text; output text is re-tokenised when the server does not return token ids).
A failed, truncated or timed-out request is reported with ``on_error`` (the run is then INVALID) and counted by kind
in ``info()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbench.errors import ConfigError
from mlbench.inference.engines.openai_api import OpenAIEngine
from mlbench.inference.generation import EngineSettings, GenerationCallbacks, GenerationRequest


def _client(model_dir: str | Path | None, settings: EngineSettings, api: str) -> OpenAIEngine:
    o = settings.options
    if not o.get("endpoint"):
        raise ConfigError("--backend openai needs the server's URL",
                          "add --endpoint URL (e.g. http://127.0.0.1:8000) and --api-model NAME")
    if not o.get("api_model"):
        raise ConfigError("--backend openai needs the name of the model the server serves",
                          "add --api-model NAME (see the server's GET /v1/models)")
    env = o.get("api_key_env")
    return OpenAIEngine(
        str(o["endpoint"]), str(o["api_model"]), max_tokens=1,
        concurrency=int(o.get("concurrency") or settings.batch_size),
        timeout_s=float(o.get("request_timeout") or 60.0), api_key_env=env or "OPENAI_API_KEY",
        api_key_required=bool(env), tokenizer_dir=str(model_dir) if model_dir else None, api=api)


class OpenAIServerEngine:
    name = "openai"
    api = "completions"
    streams = True  # first tokens are reported as they arrive
    counts_tokens = True

    def __init__(self, model_dir: str | Path | None, settings: EngineSettings):
        self.client = _client(model_dir, settings, self.api)
        self.callbacks: GenerationCallbacks | None = None

    def start(self, callbacks: GenerationCallbacks) -> None:
        self.callbacks = callbacks
        self.probe = self.client.start()

    def submit(self, requests: list[GenerationRequest]) -> None:
        cb, submit = self.callbacks, self.client.submit
        for r in requests:
            submit(r.id, r.prompt, max_tokens=r.max_new_tokens, on_first_token=cb.on_first_token,
                   on_done=self._done, on_error=self._error)

    def _done(self, rid: int, completion) -> None:
        self.callbacks.on_done(rid, completion.token_ids, completion.token_count)

    def _error(self, rid: int, kind: str, message: str) -> None:
        self.callbacks.on_error(rid, f"{kind}: {message}")

    def flush(self) -> None:
        pass  # every request is sent as soon as a slot is free

    def stop(self) -> None:
        self.client.stop()

    def info(self) -> dict[str, Any]:
        return {"backend": "openai", "engine": "openai",
                "batching": f"the server's own; mlbench keeps up to {self.client.concurrency} requests in flight",
                **self.client.describe()}


class OpenAITranscriptionEngine(OpenAIServerEngine):
    """Speech: each request's prompt is a WAV file (bytes), posted to ``/v1/audio/transcriptions``; the answer's text
    is what the task scores. Not streamed, so no first token is reported (``streams`` False: the harness then runs
    without token latencies). Token counts: the text tokenised with the tokenizer of the model directory when one
    is given (``counts_tokens``), else none (the counts are 0)."""

    api = "transcriptions"
    streams = False

    def __init__(self, model_dir: str | Path | None, settings: EngineSettings):
        super().__init__(model_dir, settings)
        self.counts_tokens = self.client.counts_tokens

    def submit(self, requests: list[GenerationRequest]) -> None:
        submit = self.client.submit_audio
        for r in requests:
            submit(r.id, r.prompt, on_done=self._done, on_error=self._error)

    def _done(self, rid: int, completion) -> None:
        self.callbacks.on_done(rid, completion.token_ids, completion.token_count, text=completion.text)

    def info(self) -> dict[str, Any]:
        return {**super().info(),
                "max_new_tokens": "the server's own limit (the transcription API has no max-tokens field)"}
