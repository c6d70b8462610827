"""``transformers`` engine: in-process greedy generation with a KV cache, CPU or GPU.

Two ways of batching, chosen with the ``batching`` option (``mlbench infer --batching``):

- ``continuous`` (the default): our own slot loop. The running batch holds up to ``batch_size`` requests, one
  row each of a left-padded ``DynamicCache``; every iteration runs ONE batched decode step over the rows, each row
  at its own position (``position_ids``) behind its own padding (``attention_mask``). A request that ends (EOS or
  its ``max_new_tokens``) is reported done at that step and its row leaves the batch; waiting requests are
  prefilled together (left-padded) and their rows join the batch before the next step, so a finished sequence's
  slot goes to a waiting one at once instead of idling until the longest of its batch ends. Each row's first
  token is reported right after its prefill. Greedy outputs equal single-sequence greedy generation token for
  token (tested on the tiny model, fp32). Cost: besides the decode steps (the same kernels as ``model.generate``,
  whose ``DynamicCache`` also copies the cache on every step), one copy of the cache when rows leave or join. A
  newcomer's prefill runs whole between two decode steps of the running rows (no chunked prefill), which
  lengthens their time per output token (Server, see README's Measured table).
- ``static``: static batches refilled between batches, ``model.generate`` with a streamer; a request is reported
  done at its own EOS but its slot idles until its batch ends. Kept for comparison, and what runs by default
  where ``continuous`` cannot: a model whose cache is not one plain ``DynamicLayer`` per layer (sliding-window
  layers), or a transformers without per-layer caches (``--batching continuous`` refuses them in one line).

Why our own loop and not transformers' own continuous batching (``generate_batch`` / ``init_continuous_batching``
on its paged cache): on CPU its default configuration sizes the paged cache from the host's free RAM (it took 52 s
for 8 tiny prompts on this 2-core machine once, and was killed for memory the next time), so the 55 s an earlier
session saw was that configuration, not the CPU. Sized for the batch (``page_size`` 16, ``max_batch_tokens``
2048, ``max_requests_per_batch`` = batch size) it gives the same greedy tokens, but its scheduler cost 2.0x the
CPU time of this loop on the same 64 prompts of mixed output lengths (4.2 s against 2.1 s, about the same as
static ``model.generate`` batches, which waste half their steps on finished rows;
``benchmarks/llm_continuous_batching.py --hf-generate-batch``). Its speed on GPU (flash/paged attention, CUDA
graphs) was not measured here (no GPU lent). This loop runs the model's own forward on a plain cache, so a step
costs what a ``model.generate`` step costs (measured on CPU; equal output lengths, where slots never free early:
see README's Measured table).
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


BATCHING = ("continuous", "static")
BATCHING_WORDS = {
    "continuous": "continuous: one batched decode step over up to batch_size running requests (left-padded KV cache, "
                  "each row at its own position); a request that ends leaves the batch at that step and waiting "
                  "requests are prefilled into the free slots before the next (greedy, KV cache)",
    "static": "static batches refilled between batches (model.generate, greedy, KV cache); a request completes at "
              "its own EOS, its slot is freed when the batch ends"}


class _Row:
    """One request of the continuous batch: what it asked for and what it generated so far."""

    __slots__ = ("req", "out")

    def __init__(self, req: GenerationRequest, first: int):
        self.req, self.out = req, [first]


class TransformersEngine(QueuedEngine):
    name = "transformers"

    def __init__(self, model_dir: str | Path | None, settings: EngineSettings):
        from mlbench.errors import ConfigError

        if settings.precision not in DTYPES:
            raise ConfigError(f"--precision {settings.precision} is not offered by the transformers engine",
                              f"use one of {', '.join(DTYPES)}")
        if model_dir is None:
            raise MlbenchError("the transformers engine needs a model directory", "pass --model-dir DIR")
        self.batching = settings.options.get("batching") or "auto"  # auto: continuous where it can run, else static
        self.auto_note = ""
        if self.batching not in BATCHING + ("auto",):
            raise ConfigError(f"--batching {self.batching} is not offered by the transformers engine",
                              f"use one of {', '.join(BATCHING)}")
        super().__init__(settings)
        self.model_dir = Path(model_dir)
        self.model: Any = None
        self.callbacks: GenerationCallbacks | None = None
        self.batches = 0  # static: model.generate calls; continuous: prefills (requests admitted together)
        self.steps = 0  # continuous: batched decode steps
        self.sequences = 0
        self.cpu_s = 0.0  # CPU time of the generation thread while it generates (with 1 thread: all of the model's)
        self.kv_peak_tokens = 0  # largest sum over the batch of (padded prompt + generated) positions
        self.weights_bytes = 0
        self.device_peak_bytes: int | None = None
        self._reset()

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
        why_not = self._continuous_unsupported()
        if why_not and self.batching == "continuous":
            raise MlbenchError(f"--batching continuous: {why_not}", "use --batching static")
        if self.batching == "auto":
            self.batching, self.auto_note = ("static", f"static because {why_not}") if why_not else ("continuous", "")
        if self.batching == "continuous":
            import inspect

            # transformers 5 names the forward's cache argument ``cache`` (``past_key_values`` is deprecated there)
            self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters \
                else "past_key_values"
            self._start_thread(self._continuous_loop, "mlbench-generate")
        else:
            self._start_thread(lambda: self._batch_loop(self.run_batch), "mlbench-generate")

    def _continuous_unsupported(self) -> str:
        """Why the continuous mode cannot run this model with the installed transformers ('' when it can)."""
        try:
            from transformers import DynamicCache
            from transformers.cache_utils import DynamicLayer

            layers = DynamicCache(config=self.model.config).layers
        except (ImportError, AttributeError, TypeError):
            import transformers

            return f"transformers {transformers.__version__} has no per-layer DynamicCache (a newer one has)"
        kinds = {type(layer).__name__ for layer in layers}
        if kinds != {DynamicLayer.__name__}:
            return f"it needs a plain KV cache per layer; this model's cache has {', '.join(sorted(kinds))} layers"
        return ""

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
                   "most positions the batch's cache held at once (rows x padded length, padding included)"}
        if self.device_peak_bytes is not None:
            mem["device_peak_allocated_bytes"] = self.device_peak_bytes
        return {"backend": self.name, "engine": self.name, "transformers": transformers.__version__, "torch": torch.__version__,
                "device": self.settings.device, "precision": self.settings.precision,
                "batch_size": self.settings.batch_size, "threads": self.settings.threads,
                "batching": BATCHING_WORDS[self.batching], "batching_mode": self.batching,
                **({"batching_note": self.auto_note} if self.auto_note else {}),
                "batches": self.batches, "decode_steps": self.steps, "sequences": self.sequences,
                "generation_thread_cpu_s": self.cpu_s,
                "memory": mem}

    # ------------------------------------------------------------------ the generation thread: continuous
    def _reset(self) -> None:
        """No running batch: no rows, no cache."""
        self._rows: list[_Row] = []
        self._cache: Any = None  # DynamicCache, one row per request of self._rows, left-padded
        self._mask: Any = None  # [rows, cache length] 1 where the cache holds a real position
        self._next: Any = None  # [rows] the token each row feeds into the next step

    def _continuous_loop(self) -> None:
        import torch

        bs = self.settings.batch_size
        while True:
            free = bs - len(self._rows)
            new = self._take(free, block=not self._rows) if free else []
            if new is None:
                return
            self._reported.clear()
            cpu0 = time.thread_time()
            try:
                with torch.inference_mode():
                    if new:
                        self._admit(new)
                    if self._rows:
                        self._step()
            except Exception as exc:  # noqa: BLE001 - every request in the batch fails with the reason
                ids = {r.id for r in new}
                self._fail(new + [row.req for row in self._rows if row.req.id not in ids], exc)
                self._reset()
            self.cpu_s += time.thread_time() - cpu0

    def _admit(self, new: list[GenerationRequest]) -> None:
        """Prefill ``new`` together (left-padded), report each first token, and add the rows not already done to the
        running batch (its cache and the new rows' padded on the left to the longer of the two)."""
        import torch
        from transformers import DynamicCache

        dev = self.device
        ids, mask = left_padded([r.prompt for r in new], self.pad)
        longest = ids.shape[1]
        ids, mask = ids.to(dev), mask.to(dev)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                         use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        first = out.logits[:, -1].argmax(-1)
        self.batches += 1
        self.sequences += len(new)
        keep = []
        for row, (r, tok) in enumerate(zip(new, first.tolist(), strict=True)):
            self.callbacks.on_first_token(r.id, [tok])
            if tok in self.eos or r.max_new_tokens <= 1:
                self._done(r.id, [tok])
            else:
                keep.append(row)
                self._rows.append(_Row(r, tok))
        if not keep:
            return
        if len(keep) < len(new):
            idx = torch.tensor(keep, device=dev)
            cache.batch_select_indices(idx)
            mask, first = mask.index_select(0, idx), first.index_select(0, idx)
        if self._cache is None:
            self._cache, self._mask, self._next = cache, mask, first
        else:
            old = self._mask.shape[1]
            width = max(old, longest)
            for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
                mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
                mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
            self._mask = torch.cat([_left_pad(self._mask, width), _left_pad(mask, width)])
            self._next = torch.cat([self._next, first])
        self._trim()

    def _step(self) -> None:
        """One batched decode step over the running rows; rows that end are reported done and leave the batch."""
        import torch

        n = len(self._rows)
        self._mask = torch.cat([self._mask, self._mask.new_ones((n, 1))], dim=1)
        self.kv_peak_tokens = max(self.kv_peak_tokens, n * self._mask.shape[1])
        out = self.model(input_ids=self._next[:, None], attention_mask=self._mask,
                         position_ids=self._mask.sum(-1, keepdim=True) - 1, use_cache=True,
                         **{self._cache_kw: self._cache})
        self._next = out.logits[:, -1].argmax(-1)
        self.steps += 1
        stay = []
        for i, (row, tok) in enumerate(zip(self._rows, self._next.tolist(), strict=True)):
            row.out.append(tok)
            if tok in self.eos or len(row.out) >= row.req.max_new_tokens:
                self._done(row.req.id, row.out)
            else:
                stay.append(i)
        if len(stay) == n:
            return
        if not stay:
            self._reset()
            return
        idx = torch.tensor(stay, device=self.device)
        self._cache.batch_select_indices(idx)
        self._mask, self._next = self._mask.index_select(0, idx), self._next.index_select(0, idx)
        self._rows = [self._rows[i] for i in stay]
        self._trim()

    def _trim(self) -> None:
        """Drop the cache's leading positions that are padding in every row."""
        import torch

        skip = int(self._mask.any(0).to(torch.int8).argmax())
        if skip:
            self._mask = self._mask[:, skip:]
            for layer in self._cache.layers:
                layer.keys, layer.values = layer.keys[:, :, skip:], layer.values[:, :, skip:]

    # ------------------------------------------------------------------ the generation thread: static
    def run_batch(self, batch: list[GenerationRequest]) -> None:
        """Generate ``batch`` together (left-padded), reporting first tokens and completions as they happen."""
        import torch

        ids, mask = left_padded([r.prompt for r in batch], self.pad)
        longest = ids.shape[1]
        n_new = max(r.max_new_tokens for r in batch)
        streamer = _Streamer(self, batch)
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
        self.done = engine._reported  # what the engine reported done (``_done``) or failed
        self.seen_prompt = False
        self.steps = 0
        self.out: list[list[int]] = [[] for _ in batch]

    def put(self, value: Any) -> None:
        if not self.seen_prompt:  # the first call carries the prompt
            self.seen_prompt = True
            return
        tokens = value.reshape(-1).tolist()
        first = self.steps == 0
        self.steps += 1
        eos = self.engine.eos
        for row, (r, tok) in enumerate(zip(self.batch, tokens, strict=True)):
            if r.id in self.done:
                continue
            out = self.out[row]
            out.append(tok)
            if first:
                self.cb.on_first_token(r.id, [tok])
            if tok in eos or len(out) >= r.max_new_tokens:
                self.engine._done(r.id, out)

    def end(self) -> None:
        for row, r in enumerate(self.batch):  # generation stopped (every row ended): whatever is left is done
            if r.id not in self.done:
                if not self.out[row]:
                    self.done.add(r.id)
                    self.cb.on_error(r.id, "the model generated no token")
                else:
                    self.engine._done(r.id, self.out[row])


def left_padded(prompts: list[list[int]], pad: int) -> tuple[Any, Any]:
    """(token ids, attention mask) of ``prompts`` as rows padded on the left with ``pad`` to the longest (CPU
    int64 tensors; the mask is 1 where a row holds a prompt token)."""
    import torch

    longest = max(map(len, prompts))
    ids = torch.full((len(prompts), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, longest - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, longest - len(p):] = 1
    return ids, mask


def _left_pad(x: Any, width: int) -> Any:
    """``x`` ([rows, positions] or [rows, heads, positions, dim]) with zeros before its positions, to ``width``."""
    import torch.nn.functional as F

    missing = width - (x.shape[1] if x.dim() == 2 else x.shape[2])
    if not missing:
        return x
    return F.pad(x, (missing, 0)) if x.dim() == 2 else F.pad(x, (0, 0, missing, 0))


def _as_tuple(v: Any) -> tuple[int, ...]:
    if v is None:
        return ()
    return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else (int(v),)
