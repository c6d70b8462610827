"""``transformers`` engine: in-process batched greedy generation with a KV cache, CPU or GPU.

Batching: static batches refilled between batches. One thread takes up to ``batch_size`` waiting requests (the
Server scenario waits at most ``max_wait_s`` to fill one), left-pads them and runs ``model.generate`` (greedy,
KV cache). A streamer sees every step: each request's first token is reported right after the prefill, and a
request is reported done at the step it emits EOS or reaches its ``max_new_tokens``, not when its batch ends. Its
slot is not reused before the batch ends (that would be continuous batching, which this engine does not do: the
installed transformers offers a continuous-batching manager, but on a paged cache whose CPU path we have not
measured; see the report of the issue).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from mlbench.errors import MlbenchError
from mlbench.inference.engines.base import QueuedEngine
from mlbench.inference.generation import (
    EngineSettings,
    GenerationCallbacks,
    GenerationRequest,
    kv_cache_bytes,
)

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TransformersEngine(QueuedEngine):
    name = "transformers"

    def __init__(self, model_dir: str | Path | None, settings: EngineSettings):
        if settings.precision not in DTYPES:
            from mlbench.errors import ConfigError

            raise ConfigError(f"--precision {settings.precision} is not offered by the transformers engine",
                              f"use one of {', '.join(DTYPES)}")
        if model_dir is None:
            raise MlbenchError("the transformers engine needs a model directory", "pass --model-dir DIR")
        super().__init__(settings)
        self.model_dir = Path(model_dir)
        self.model: Any = None
        self.callbacks: GenerationCallbacks | None = None
        self.batches = 0
        self.sequences = 0
        self.cpu_s = 0.0  # CPU time of the generation thread inside batches (with 1 thread: all of the model's)
        self.kv_peak_tokens = 0  # largest sum over a batch of (padded prompt + generated) positions
        self.weights_bytes = 0
        self.device_peak_bytes: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, callbacks: GenerationCallbacks) -> None:
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        self.callbacks = callbacks
        if self.settings.threads and self.settings.device == "cpu":
            torch.set_num_threads(self.settings.threads)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no progress bars in the console
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(self.model_dir), dtype=getattr(torch, DTYPES[self.settings.precision]), use_safetensors=True,
                trust_remote_code=False, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise MlbenchError(f"transformers cannot load the model in {self.model_dir}: "
                               f"{str(exc).splitlines()[0][:300]}",
                               "pass a Hugging Face model directory (config.json, safetensors, tokenizer files)") from exc
        self.device = torch.device(self.settings.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model = model.to(self.device).eval()
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        cfg = self.model.config
        eos = self.settings.eos_token_ids or _as_tuple(getattr(self.model.generation_config, "eos_token_id", None)) \
            or _as_tuple(cfg.eos_token_id)
        if not eos:
            raise MlbenchError(f"{self.model_dir}/config.json names no eos_token_id", "add the model's end token id")
        self.eos = set(eos)
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else min(eos)
        self.pad = int(pad)
        self.gen_config = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=list(eos), pad_token_id=self.pad,
                                           use_cache=True, bos_token_id=cfg.bos_token_id)
        self.element_size = next(self.model.parameters()).element_size()
        self._start_thread(self._loop, "mlbench-generate")

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        if self.model is not None and self.device.type == "cuda":
            self.device_peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        mem: dict[str, Any] = {
            "weights_bytes": self.weights_bytes,
            "kv_cache_peak_bytes": kv_cache_bytes(self.model.config, self.kv_peak_tokens, self.element_size)
            if self.model is not None else None,
            "how": "weights: the parameters' bytes; KV cache: 2 x layers x KV heads x head dim x element size x the "
                   "largest batch's padded prompt + generated positions (what transformers' dynamic cache holds at "
                   "the end of that batch)"}
        if self.device_peak_bytes is not None:
            mem["device_peak_allocated_bytes"] = self.device_peak_bytes
        return {"backend": self.name, "engine": self.name, "transformers": transformers.__version__, "torch": torch.__version__,
                "device": self.settings.device, "precision": self.settings.precision,
                "batch_size": self.settings.batch_size, "threads": self.settings.threads,
                "batching": "static batches refilled between batches (model.generate, greedy, KV cache); a request "
                            "completes at its own EOS, its slot is freed when the batch ends",
                "batches": self.batches, "sequences": self.sequences, "generation_thread_cpu_s": self.cpu_s,
                "memory": mem}

    # ------------------------------------------------------------------ the generation thread
    def _take(self) -> list[GenerationRequest] | None:
        """Up to batch_size waiting requests; None when stopping."""
        bs, wait = self.settings.batch_size, self.settings.max_wait_s
        with self._wake:
            if not self._wait_for_work():
                return None
            if wait > 0 and len(self._queue) < bs and not self._flush:
                deadline = time.monotonic() + wait
                while len(self._queue) < bs and not self._stop and not self._flush:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
            batch = [self._queue.popleft() for _ in range(min(bs, len(self._queue)))]
            if not self._queue:  # what the flush asked to run is taken: later requests wait to fill a batch again
                self._flush = False
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self.run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - every request of the batch fails with the reason
                msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                for r in batch:
                    self._report_error(r.id, msg)

    def _report_error(self, id: int, message: str) -> None:
        state = getattr(self, "_state", {})
        if id in state and state[id].get("done"):
            return
        if id in state:
            state[id]["done"] = True
        self.callbacks.on_error(id, message)

    def run_batch(self, batch: list[GenerationRequest]) -> None:
        """Generate ``batch`` together (left-padded), reporting first tokens and completions as they happen."""
        import torch

        longest = max(len(r.prompt) for r in batch)
        n_new = max(r.max_new_tokens for r in batch)
        ids = torch.full((len(batch), longest), self.pad, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, r in enumerate(batch):
            ids[row, longest - len(r.prompt):] = torch.tensor(r.prompt, dtype=torch.long)
            mask[row, longest - len(r.prompt):] = 1
        streamer = _Streamer(self, batch)
        self._state = streamer.state
        gen = copy.copy(self.gen_config)
        gen.max_new_tokens = n_new
        cpu0 = time.thread_time()
        with torch.inference_mode():
            self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                generation_config=gen, streamer=streamer)
        streamer.end()
        self.cpu_s += time.thread_time() - cpu0
        self.batches += 1
        self.sequences += len(batch)
        self.kv_peak_tokens = max(self.kv_peak_tokens, len(batch) * (longest + streamer.steps))


class _Streamer:
    """transformers' streamer protocol (``put`` each step's tokens, ``end``): reports per request."""

    def __init__(self, engine: TransformersEngine, batch: list[GenerationRequest]):
        self.engine, self.batch = engine, batch
        self.cb = engine.callbacks
        self.seen_prompt = False
        self.steps = 0
        self.out: list[list[int]] = [[] for _ in batch]
        self.state: dict[int, dict] = {r.id: {"done": False} for r in batch}

    def put(self, value: Any) -> None:
        if not self.seen_prompt:  # the first call carries the prompt
            self.seen_prompt = True
            return
        tokens = value.reshape(-1).tolist()
        first = self.steps == 0
        self.steps += 1
        eos = self.engine.eos
        for row, (r, tok) in enumerate(zip(self.batch, tokens, strict=True)):
            st = self.state[r.id]
            if st["done"]:
                continue
            out = self.out[row]
            out.append(tok)
            if first:
                self.cb.on_first_token(r.id, [tok])
            if tok in eos or len(out) >= r.max_new_tokens:
                st["done"] = True
                self.cb.on_done(r.id, out)

    def end(self) -> None:
        for row, r in enumerate(self.batch):  # generation stopped (every row ended): whatever is left is done
            st = self.state[r.id]
            if not st["done"]:
                st["done"] = True
                if not self.out[row]:
                    self.cb.on_error(r.id, "the model generated no token")
                else:
                    self.cb.on_done(r.id, self.out[row])


def _as_tuple(v: Any) -> tuple[int, ...]:
    if v is None:
        return ()
    return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else (int(v),)
