"""The system under test for language models: LoadGen's queries become generation requests to an engine
(:mod:`mlbench.inference.generation`), and the engine's callbacks become LoadGen's token-latency calls.

- A query's first generated token -> ``FirstTokenComplete`` with that token (LoadGen's TTFT).
- Its whole output -> ``QuerySamplesComplete`` with the token ids as an int32 array and their count
  (``QuerySampleResponse(id, address, bytes, n_tokens)``): LoadGen's TPOT and tokens/s, and what the accuracy log
  holds.
- A failed request is completed with an empty response (so that LoadGen finishes), counted, and its first message
  kept: the runner makes such a run INVALID, never silently drops it.

Offline's one query is submitted at once and flushed; Server queries are submitted as they arrive.

An engine that does not stream (``first_tokens`` False: a transcription answered in one piece) never reports a first
token: no ``FirstTokenComplete`` is sent, and the harness runs LoadGen without token latencies where they need one.
``respond(text, token_ids)``: what to log for an output that comes as text (a transcription: the task's labels of
the text) instead of the token ids.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from mlbench.inference.generation import GenerationRequest


class TokenSUT:
    n_workers = 1
    pipeline = "generation engine (first token and completion reported by its callbacks)"

    def __init__(self, engine: Any, store: Any, max_new_tokens: int, *, first_tokens: bool = True,
                 respond: Any = None):
        import mlperf_loadgen as lg

        self.lg = lg
        self.engine, self.store, self.max_new_tokens = engine, store, max_new_tokens
        self.first_tokens, self.respond = first_tokens, respond
        if not first_tokens:
            self.pipeline = "request engine (each output reported whole by its callback; no first token)"
        self.error: BaseException | None = None  # a harness failure (not a failed request)
        self.abort, self._flush, self.batches, self.busy_s = False, False, 0, 0.0  # runner.run_test resets these
        self._lock = threading.Lock()
        self.reset()
        self.handle = None

    def reset(self) -> None:
        """Per-test counters."""
        self.samples = 0
        self.tokens = 0
        self.failed = 0
        self.first_failure: str | None = None
        self.in_flight = 0
        self._first_sent: set[int] = set()

    def construct(self) -> None:
        self.handle = self.lg.ConstructSUT(self._issue, self._flush_queries)

    # ------------------------------------------------------------------ LoadGen's side
    def _issue(self, samples) -> None:
        try:
            prompt, n = self.store.prompt, self.max_new_tokens
            reqs = [GenerationRequest(s.id, s.index, prompt(s.index), n) for s in samples]
            with self._lock:
                self.in_flight += len(reqs)
            self.engine.submit(reqs)
            if len(reqs) > 1:  # Offline's single query: everything is here
                self.engine.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by the runner after LoadGen returns
            self.error = self.error or exc
            for s in samples:
                self.on_error(s.id, f"{type(exc).__name__}: {exc}")

    def _flush_queries(self) -> None:
        self.engine.flush()

    # ------------------------------------------------------------------ the engine's callbacks
    def on_first_token(self, id: int, token_ids: list[int]) -> None:
        arr = np.asarray(token_ids, dtype=np.int32)
        with self._lock:
            self._first_sent.add(id)
        self.lg.FirstTokenComplete([self.lg.QuerySampleResponse(id, arr.ctypes.data, arr.nbytes, len(arr))])

    def on_done(self, id: int, token_ids: list[int], token_count: int | None = None, *,
                text: str | None = None) -> None:
        if self.respond is not None:
            try:
                arr = self.respond(text, token_ids)
            except BaseException as exc:  # noqa: BLE001 - reported by the runner after LoadGen returns
                self.error = self.error or exc
                return self.on_error(id, f"{type(exc).__name__}: {exc}")
        else:
            arr = np.asarray(token_ids, dtype=np.int32)
        n = len(token_ids) if token_count is None else int(token_count)
        with self._lock:
            first = id not in self._first_sent  # an engine that reported no first token: it comes with the output
            self._first_sent.discard(id)
            self.samples += 1
            self.tokens += n
            self.in_flight -= 1
        if first and self.first_tokens:
            self.lg.FirstTokenComplete([self.lg.QuerySampleResponse(id, arr.ctypes.data, arr[:1].nbytes, 1)])
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(id, arr.ctypes.data, arr.nbytes, n)])

    def on_error(self, id: int, message: str) -> None:
        with self._lock:
            self.failed += 1
            self.first_failure = self.first_failure or message
            self.in_flight -= 1
            first = id not in self._first_sent
            self._first_sent.discard(id)
        empty = np.zeros(1, dtype=np.int32)
        if first and self.first_tokens:
            self.lg.FirstTokenComplete([self.lg.QuerySampleResponse(id, empty.ctypes.data, 0, 0)])
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(id, empty.ctypes.data, 0, 0)])

    def drain(self) -> None:
        """Ctrl-C: stop the engine (what it has not completed stays pending; the runner leaves LoadGen running)."""
        self.abort = True
        self.engine.stop()

    def stop(self) -> None:
        self.engine.stop()
        if self.handle is not None:
            self.lg.DestroySUT(self.handle)
            self.handle = None
