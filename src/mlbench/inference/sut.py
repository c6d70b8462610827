"""Systems under test: what LoadGen's queries run on.

- SingleStream / MultiStream: inline. LoadGen waits for each query anyway, so the query runs on LoadGen's
  issue thread as one batch: no hand-off, no queue latency.
- Server / Offline: dynamic batching. Queries land in a pending queue; ``workers`` threads each take up to
  ``batch_size`` samples (Server waits at most ``max_wait`` to fill a batch; Offline's one big query fills
  them at once), run the backend, and complete the whole batch in one ``QuerySamplesComplete`` call. Threads
  x backend threads are sized to the cores together (see ``backends.base.default_threads``).
- Offline gathers ahead and finishes behind: while a worker runs batch k, a helper thread gathers batch k+1
  out of the sample store (the rest of the one big query is already queued), then post-processes and completes
  batch k-1. The backend runs without the GIL, so both overlap it instead of adding to it.

A failing backend or Ctrl-C sets ``abort``: every sample still pending is completed at once with an empty
response, so LoadGen finishes its logs quickly and nothing it wrote is lost; the runner then records the run
as aborted with the error.
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlbench.inference import inputs

INLINE_SCENARIOS = ("SingleStream", "MultiStream")
SERVER_SPIN_S = 100e-6  # how long an idle Server worker polls before sleeping (see SUT.__init__)


class SUT:
    """One system under test over a task's sample store and a prepared backend."""

    def __init__(self, task: Any, store: Any, backend: Any, *, scenario: str, batch_size: int,
                 max_wait_s: float, workers: int, host_threads: int = 1):
        import mlperf_loadgen as lg

        self.lg = lg
        self.task, self.store, self.backend = task, store, backend
        self.scenario, self.batch_size, self.max_wait_s = scenario, batch_size, max_wait_s
        self.inline = scenario in INLINE_SCENARIOS
        self.n_workers = workers
        # torch ops outside the backend (the task's post-processing) use this many threads per worker: the
        # default (all cores) in each of several workers oversubscribes the cores and spins.
        self.host_threads = host_threads
        self.error: BaseException | None = None
        self.abort = False
        self.batches = 0
        self.samples = 0
        self.busy_s = 0.0  # time inside backend.predict, summed over workers
        self.tokens = 0  # tokens the responses generated (tasks whose responses count them)
        # Queries wait in a deque: append/popleft are atomic C calls, so LoadGen's issue thread pays a fraction
        # of a microsecond and never takes a lock. Items are (ids, indices, offset); a query bigger than a batch
        # (Offline) is split by the worker that takes it, which puts the rest back at the front. None is a
        # worker's stop sign.
        self._queue: collections.deque = collections.deque()
        # A worker with nothing to do sleeps on its own lock (which it holds) after putting the lock on
        # _sleepers; whoever queues work pops one sleeper and releases its lock. Raw locks and list pop/append
        # are single C calls: a wake-up costs the issue thread about a microsecond, where threading.Event's
        # Python-level condition variable cost several on each side (measured: see benchmarks/infer_overhead.py).
        self._sleepers: list = []
        self._flush = False
        self._threads: list[threading.Thread] = []
        # A backend may keep the loaded samples in device memory (gathered there, no host copy per batch).
        self._device_gather = getattr(backend, "gather", None)
        # Server: after each batch, hand the GIL to LoadGen's issue thread at once (its next query is due)
        # instead of at the next switch interval; measured: +30% VALID QPS with the null backend. Offline has
        # nobody waiting, and there the yield costs a third of the throughput, so only Server yields.
        self._yield = scenario == "Server"
        # Server: a worker that finds the queue empty polls it (yielding the GIL each time) for a moment
        # before it sleeps; at high rates the next query is microseconds away and a sleep/wake costs more.
        # Measured with the null backend: VALID at 170k QPS in 11 of 15 runs against 0 of 6 without it.
        self._spin_s = SERVER_SPIN_S if self._yield else 0.0
        # Offline: gather the next batch on a helper thread while this one runs (a device gather too: it is
        # queued on the same stream). Measured with the null backend on 2 cores: see benchmarks/infer_overhead.py.
        self.gather_ahead = scenario == "Offline" and backend.needs_input

    @property
    def pipeline(self) -> str:
        """How a worker's batches overlap, in words (result.json ``backend.sut_pipeline``)."""
        if self.inline:
            return "inline on LoadGen's thread"
        if self.gather_ahead:
            return "gather ahead, finish behind (a helper thread per worker)"
        return "one batch at a time per worker"

    # ------------------------------------------------------------------ LoadGen callbacks
    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        if self.inline and not self.abort:
            for s in range(0, len(ids), self.batch_size):
                self._run(ids[s:s + self.batch_size], indices[s:s + self.batch_size])
            return
        self._queue.append((ids, indices, 0))
        if self._sleepers:
            self._wake_one()

    def _wake_one(self) -> None:
        try:
            lock = self._sleepers.pop()
        except IndexError:  # another thread woke the last sleeper meanwhile
            return
        lock.release()

    def flush(self) -> None:
        self._flush = True

    # ------------------------------------------------------------------ life cycle
    def start(self) -> int:
        """Start the workers and return LoadGen's SUT handle."""
        if not self.inline:
            for i in range(self.n_workers):
                t = threading.Thread(target=self._worker, args=(threading.Lock(),), name=f"mlbench-sut-{i}",
                                     daemon=True)
                t.start()
                self._threads.append(t)
        self.handle = self.lg.ConstructFastSUT(self.issue, self.flush)
        return self.handle

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.append(None)  # one stop sign per worker
        while self._sleepers:
            self._wake_one()
        for t in self._threads:
            t.join(timeout=30)
        self.lg.DestroyFastSUT(self.handle)

    def drain(self) -> None:
        """Abort: complete everything pending with empty responses, now and for any query still to come."""
        self.abort = True
        self.flush()

    # ------------------------------------------------------------------ work
    def _next(self, lock: Any, timeout: float | None) -> Any:
        """The next queued item; sleeps on ``lock`` (the calling worker's, held) until one arrives, at most
        ``timeout`` s (None: as long as it takes). Raises IndexError if none arrived in time."""
        q = self._queue
        spin_until = None
        while True:
            try:
                return q.popleft()
            except IndexError:
                if timeout is not None and timeout <= 0:
                    raise
            if self._spin_s:
                now = time.perf_counter()
                if spin_until is None:
                    spin_until = now + self._spin_s
                if now < spin_until:
                    time.sleep(0)
                    continue
            self._sleepers.append(lock)
            if q:  # re-check after announcing sleep: an item appended meanwhile is never missed
                self._withdraw(lock)
                continue
            if lock.acquire(timeout=timeout if timeout is not None else 0.5):
                continue  # woken: someone popped this lock from _sleepers and released it
            self._withdraw(lock)
            if timeout is not None:
                return q.popleft()  # timed out: IndexError when still empty

    def _withdraw(self, lock: Any) -> None:
        """Take ``lock`` off _sleepers, or, when a waker popped it first, take the release it makes."""
        try:
            self._sleepers.remove(lock)
        except ValueError:
            lock.acquire()

    def _take(self, lock: Any, wait: bool = True) -> tuple[list, list] | tuple[()] | None:
        """Up to batch_size samples: what is queued now, and (Server with max_wait) what arrives in time.
        None: the stop sign. ``wait`` False: () when nothing is queued now."""
        try:
            item = self._next(lock, None if wait else 0.0)
        except IndexError:
            return ()
        if item is None:
            return None
        ids: list = []
        idx: list = []
        deadline = None
        while True:
            q_ids, q_idx, start = item
            end = min(len(q_ids), start + self.batch_size - len(ids))
            if start == 0 and end == len(q_ids):
                ids += q_ids
                idx += q_idx
            else:
                ids += q_ids[start:end]
                idx += q_idx[start:end]
                if end < len(q_ids):
                    self._queue.appendleft((q_ids, q_idx, end))  # the rest of a big query, for the next batch
            if len(ids) >= self.batch_size:
                return ids, idx
            wait = 0.0
            if self.max_wait_s > 0 and not (self._flush or self.abort):
                now = time.monotonic()
                deadline = deadline or now + self.max_wait_s
                wait = deadline - now
            try:
                item = self._next(lock, wait)
            except IndexError:
                return ids, idx
            if item is None:  # stop sign: finish this batch, leave the sign for the loop
                self._queue.appendleft(None)
                return ids, idx

    def _worker(self, lock: Any) -> None:
        lock.acquire()  # held while awake; see _next
        torch = sys.modules.get("torch")
        if torch is not None:  # per thread: each worker thread has its own OpenMP pool
            torch.set_num_threads(self.host_threads)
        pool = None  # the gather-ahead thread, made on first use
        try:
            while True:
                work = self._take(lock)
                if work is None:
                    return
                if self.gather_ahead:
                    if pool is None:
                        pool = self._gather_pool()
                    if not self._run_ahead(work, lock, pool):
                        return
                    continue
                self._run(*work)
                if self._yield:
                    time.sleep(0)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _gather_pool(self) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        def init() -> None:
            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(self.host_threads)

        return ThreadPoolExecutor(1, thread_name_prefix=f"{threading.current_thread().name}-gather",
                                  initializer=init)

    def _run_ahead(self, work: tuple[list, list], lock: Any, pool: Any) -> bool:
        """Run ``work`` and every batch queued behind it, each next batch gathered on ``pool`` while the one
        before runs, and each batch finished (post-processed, completed) on ``pool`` while the next one runs;
        returns False when it met the stop sign. The pool's one thread runs in submission order, so the gather
        of batch k+2 waits behind the finishing of batch k: a worker is never more than two batches ahead of
        its finishing, even when the network is much faster than the post-processing (outputs do not pile up)."""
        ahead = pool.submit(self._gather, work[1])
        while True:
            nxt = self._take(lock, wait=False)  # Offline: the rest of the big query, if any
            nxt_ahead = pool.submit(self._gather, nxt[1]) if nxt and not self.abort else None
            self._run(*work, ahead=ahead, finish_on=pool)
            if not nxt:  # (): nothing queued now, wait for the next query; None: the stop sign
                return nxt is not None
            work, ahead = nxt, nxt_ahead

    def _run(self, ids: Sequence[int], indices: Sequence[int], ahead: Any = None, finish_on: Any = None) -> None:
        """Run one batch and finish it; ``ahead``: the future of its input when it was gathered ahead;
        ``finish_on``: an executor to finish it on (the gather-ahead thread), so that this thread starts the
        next batch at once. Measured (DLRM mini, ONNX Runtime): the post-processing and completion of a batch
        took 0.25 ms against 0.02 ms in a loop, because the network's run before leaves them cold caches."""
        if self.abort:
            self._complete(ids, None)
            return
        try:
            if ahead is not None:
                x = ahead.result()
            else:
                x = self._gather(indices) if self.backend.needs_input else None
            t0 = time.perf_counter()
            out = self.backend.predict(x)
            self.busy_s += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - a crashing backend must still let LoadGen finish
            self._fail(exc)
            out = None
        self.batches += 1
        self.samples += len(ids)
        if finish_on is not None and out is not None:
            finish_on.submit(self._finish, ids, indices, out)
        else:
            self._finish(ids, indices, out)

    def _finish(self, ids: Sequence[int], indices: Sequence[int], out: Any) -> None:
        """Post-process a batch's outputs and complete its samples (empty responses after a failure)."""
        try:
            responses = None if out is None or self.abort else self.task.postprocess(out, indices)
            self._complete(ids, responses)
        except BaseException as exc:  # noqa: BLE001 - e.g. a task returning the wrong number of responses
            self._fail(exc)
            self._complete(ids, None)

    def _fail(self, exc: BaseException) -> None:
        self.error = self.error or exc
        self.drain()

    def _gather(self, indices: Sequence[int]) -> Any:
        x = self._device_gather(indices) if self._device_gather is not None else None
        return self.store.batch(indices) if x is None else x

    def _complete(self, ids: Sequence[int], responses: Any) -> None:
        # map() over the pybind constructor: building responses is most of the per-sample cost
        qsr, n = self.lg.QuerySampleResponse, len(ids)
        if responses is None:
            self.lg.QuerySamplesComplete(list(map(qsr, ids, itertools.repeat(0, n), itertools.repeat(0, n))))
        elif isinstance(responses, inputs.RaggedArray):
            if len(responses) != n:
                raise ValueError(f"postprocess returned {len(responses)} responses for {n} samples")
            addresses, sizes = responses.pointers()  # one vectorised pass, no array per sample
            if responses.tokens is None:
                self.lg.QuerySamplesComplete(list(map(qsr, ids, addresses, sizes)))
            else:  # LoadGen's n_tokens: what tokens/s counts
                self.tokens += int(responses.tokens.sum())
                self.lg.QuerySamplesComplete(list(map(qsr, ids, addresses, sizes, responses.tokens.tolist())))
        elif isinstance(responses, np.ndarray):
            arr = np.ascontiguousarray(responses)
            if len(arr) != n:
                raise ValueError(f"postprocess returned {len(arr)} responses for {n} samples")
            base, step = arr.ctypes.data, (arr.strides[0] if arr.ndim else arr.itemsize)
            size = arr[0].nbytes if arr.ndim > 1 else arr.itemsize
            self.lg.QuerySamplesComplete(list(map(qsr, ids, range(base, base + n * step, step),
                                                  itertools.repeat(size, n))))
        else:
            arrs = [np.ascontiguousarray(a) for a in responses]  # kept alive until LoadGen copied them
            self.lg.QuerySamplesComplete([qsr(i, a.ctypes.data, a.nbytes) for i, a in zip(ids, arrs, strict=True)])


class QSL:
    """LoadGen's query sample library over a task's store."""

    def __init__(self, store: Any, performance_count: int, on_load: Any = None):
        import mlperf_loadgen as lg

        self.lg = lg
        self.store = store
        self.on_load = on_load  # e.g. the backend copying loaded samples to the GPU (untimed, as LoadGen loads)
        self.error: BaseException | None = None
        self.handle = lg.ConstructQSL(store.total_count, performance_count, self._load, self._unload)

    def _load(self, indices: Sequence[int]) -> None:
        try:
            self.store.load(list(indices))
            if self.on_load is not None:
                self.on_load(self.store)
        except BaseException as exc:  # noqa: BLE001 - reported by the runner after LoadGen returns
            self.error = self.error or exc

    def _unload(self, indices: Sequence[int]) -> None:
        self.store.unload(list(indices))

    def destroy(self) -> None:
        self.lg.DestroyQSL(self.handle)
