"""What the in-process engines share: a queue of requests that ``submit`` fills from any thread and one generation
thread drains; ``flush`` says nothing more is coming soon, ``stop`` ends the thread after what is queued."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from mlbench.inference.generation import EngineSettings, GenerationRequest


class QueuedEngine:
    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self._queue: collections.deque[GenerationRequest] = collections.deque()
        self._wake = threading.Condition()
        self._stop = False
        self._flush = False
        self._thread: threading.Thread | None = None

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
