"""What the in-process engines share: a queue of requests that ``submit`` fills from any thread and one generation
thread drains; ``flush`` says nothing more is coming soon, ``stop`` ends the thread after what is queued.

``_take`` is how the generation thread takes requests (up to a limit; with ``--max-wait-ms`` it waits that long
to fill a batch unless a flush says nothing more is coming), and ``_batch_loop`` is the loop of an engine that
runs whole batches (the ``vllm`` engine, the ``transformers`` engine's static mode): take a batch, run it, fail
each of its requests with the reason when it raises. An engine reports a request done with ``_done``, which
remembers it, so that a batch failing after some of its requests completed fails only the others (LoadGen must
hear of each request once)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from mlbench.inference.generation import EngineSettings, GenerationCallbacks, GenerationRequest


class QueuedEngine:
    callbacks: GenerationCallbacks

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self._queue: collections.deque[GenerationRequest] = collections.deque()
        self._wake = threading.Condition()
        self._stop = False
        self._flush = False
        self._thread: threading.Thread | None = None
        self._reported: set[int] = set()  # requests of the batch (iteration) running now already reported done

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def submit(self, requests: list[GenerationRequest]) -> None:
        with self._wake:
            self._queue.extend(requests)
            self._wake.notify()

    def flush(self) -> None:
        with self._wake:
            self._flush = True
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        self._thread = None

    def _wait_for_work(self) -> bool:
        """Under ``self._wake``: wait until requests are queued; False when stopping with none left."""
        while not self._queue and not self._stop:
            self._wake.wait(0.5)
        return bool(self._queue)

    def _take(self, limit: int, block: bool = True) -> list[GenerationRequest] | None:
        """Up to ``limit`` waiting requests. ``block``: wait for one (and up to ``max_wait_s`` for ``limit``, unless
        flushed); None when stopping with none left. Not ``block``: what is waiting now, maybe nothing."""
        with self._wake:
            if block:
                if not self._wait_for_work():
                    return None
                wait = self.settings.max_wait_s
                if wait > 0 and len(self._queue) < limit and not self._flush:
                    deadline = time.monotonic() + wait
                    while len(self._queue) < limit and not self._stop and not self._flush:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._wake.wait(left)
            taken = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            if not self._queue:  # what the flush asked to run is taken: later requests wait to fill a batch again
                self._flush = False
            return taken

    def _batch_loop(self, run_batch: Callable[[list[GenerationRequest]], None]) -> None:
        """Take up to ``batch_size`` requests, run them, again; a batch that raises fails each of its requests."""
        while True:
            batch = self._take(self.settings.batch_size)
            if batch is None:
                return
            self._reported.clear()
            try:
                run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - every request of the batch fails with the reason
                self._fail(batch, exc)

    def _done(self, id: int, token_ids: list[int]) -> None:
        """Report request ``id`` done (and remember it: ``_fail`` passes it over)."""
        self._reported.add(id)
        self.callbacks.on_done(id, token_ids)

    def _fail(self, requests: list[GenerationRequest], exc: BaseException) -> None:
        """Report ``exc`` as the error of each request not already reported done (``_done``)."""
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        for r in requests:
            if r.id not in self._reported:
                self.callbacks.on_error(r.id, msg)
