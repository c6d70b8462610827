"""The generation-engine interface: what runs a language model under ``mlbench infer`` (no benchmark names here).

An engine turns prompts (token ids) into generated token ids, reporting each request's first token as soon as it
exists and its whole output when it is done. The LoadGen side (``inference/token_sut.py``) submits requests as
LoadGen issues queries and turns the callbacks into ``FirstTokenComplete`` / ``QuerySamplesComplete``. An engine
never talks to LoadGen and never decodes text.

The contract, in full::

    engine = generation.create(name, model_dir, settings)   # EngineSettings below; loads nothing yet
    engine.start(callbacks)         # load the model, start its thread(s); untimed. Errors: MlbenchError (one line)
    engine.submit([GenerationRequest(id, index, prompt, max_new_tokens), ...])   # any thread; never blocks long
    engine.flush()                  # nothing more is coming soon (Offline: everything is submitted): run what waits
    ...                             # the engine calls back, from its own thread(s), exactly once per request:
    callbacks.on_first_token(id, token_ids)   # the first generated token(s) exist (before on_done; once)
    callbacks.on_done(id, token_ids)          # all generated token ids (EOS included when generated), list[int]
    callbacks.on_done(id, token_ids, n)       # the same, where the engine knows the count better than len(token_ids)
                                              # (a server's own count, its streamed text re-tokenised for the ids)
    callbacks.on_done(id, token_ids, n, text=t)   # a transcription engine: the server's text (what the task scores)
    callbacks.on_error(id, message)           # instead of on_done: this request failed (one line, plain words)
    engine.info() -> dict           # for result.json: engine name, versions, batch, memory (see below)
    engine.stop()                   # finish or fail what is in flight, stop the threads; safe to call twice

``GenerationRequest.id`` is unique per request (LoadGen's query id); ``index`` is the sample's dataset index (the
same sample may be requested several times). ``max_new_tokens`` >= 1. Greedy decoding (as MLPerf's references).

``info()`` keys every engine should give: ``backend`` and ``engine`` (its name), ``batching`` (how requests share the model,
in words), and where it knows them ``memory`` = {``weights_bytes``, ``kv_cache_peak_bytes``, ``how``}.

Optional engine attributes: ``streams`` (False: no first token exists before the whole output, so the harness
runs LoadGen without token latencies where it needs them) and ``counts_tokens`` (False: the counts are 0 because
nothing could count them honestly, so no tokens/s is reported).

Speech tasks (``engine_kind = "transcription"`` on the task) get their engine from ``TRANSCRIPTION_ENGINES``: a
request's ``prompt`` is then one WAV file (bytes), and ``on_done`` carries the text.

Engines are looked up by name in ``ENGINES`` ("module:Class"), imported only when chosen. A new engine (an HTTP
client of an OpenAI-compatible server, ...) is one module and one line there. The class is constructed as
``Class(model_dir, settings)``; ``settings.options`` carries the engine's own string options (e.g. an endpoint).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One prompt to complete."""

    id: int  # unique per request: LoadGen's query sample id
    index: int  # the sample's dataset index (QSL index)
    prompt: list[int] | bytes  # prompt token ids (a transcription engine's: one WAV file)
    max_new_tokens: int  # at least 1


@runtime_checkable
class GenerationCallbacks(Protocol):
    """What an engine reports, from any of its threads, once per request (first token, then done or error)."""

    def on_first_token(self, id: int, token_ids: list[int]) -> None: ...

    def on_done(self, id: int, token_ids: list[int], token_count: int | None = None, *,
                text: str | None = None) -> None: ...

    def on_error(self, id: int, message: str) -> None: ...


@dataclass(kw_only=True)
class EngineSettings:
    """How to run the model; the engine may ignore what does not apply to it (a remote server ignores device)."""

    device: str = "cpu"  # cpu, cuda, cuda:N
    precision: str = "fp32"  # fp32, bf16, fp16
    batch_size: int = 8  # most sequences generated together
    max_wait_s: float = 0.0  # Server: longest wait to fill a batch (0: run what is pending)
    threads: int | None = None  # intra-op threads (CPU)
    eos_token_ids: tuple[int, ...] = ()  # stop tokens; empty: the model's own (config / generation_config)
    context_length: int | None = None  # longest prompt + output the model takes (None: the model's own)
    options: dict[str, Any] = field(default_factory=dict)  # the engine's own options (strings as given)


@runtime_checkable
class GenerationEngine(Protocol):
    name: str

    def start(self, callbacks: GenerationCallbacks) -> None: ...

    def submit(self, requests: list[GenerationRequest]) -> None: ...

    def flush(self) -> None: ...

    def stop(self) -> None: ...

    def info(self) -> dict[str, Any]: ...


# name -> "module:Class". Imported only when chosen.
ENGINES: dict[str, str] = {
    "transformers": "mlbench.inference.engines.hf:TransformersEngine",
    "vllm": "mlbench.inference.engines.vllm_engine:VllmEngine",
    "openai": "mlbench.inference.engines.openai_engine:OpenAIServerEngine",
}

# speech to text (tasks with engine_kind = "transcription"): name -> "module:Class"
TRANSCRIPTION_ENGINES: dict[str, str] = {
    "openai": "mlbench.inference.engines.openai_engine:OpenAITranscriptionEngine",
}


def create(name: str, model_dir: str | Path | None, settings: EngineSettings, kind: str = "text"
           ) -> GenerationEngine:
    """The engine called ``name`` of ``kind`` (text or transcription; unknown names get a did-you-mean error)."""
    engines = TRANSCRIPTION_ENGINES if kind == "transcription" else ENGINES
    if name not in engines:
        from mlbench.registry import did_you_mean

        raise did_you_mean(name, list(engines), "generation engine" if kind == "text" else f"{kind} engine")
    module, attr = engines[name].split(":")
    return getattr(importlib.import_module(module), attr)(model_dir, settings)


def kv_cache_bytes(config: Any, tokens: int, element_size: int) -> int:
    """Bytes of a full KV cache holding ``tokens`` positions (summed over the sequences) for a decoder ``config``
    (transformers-style fields): 2 (K and V) x layers x KV heads x head dim x element size x tokens."""
    heads = getattr(config, "num_attention_heads", 1)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * element_size * tokens
