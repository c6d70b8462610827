"""``--compile`` on the PyTorch backend: every batch size the test will see, compiled before it starts.

torch.compile specialises on shapes. A batch of a size it has not seen (the last, partial batch of an Offline
query; Server batches formed under a light load) makes it compile again, which takes seconds, and in the middle
of the timed test. So the runner compiles one static graph per batch size, powers of two up to the SUT's largest
batch, during the warm-up (untimed). A batch of ``n`` samples is padded to the smallest of those sizes that holds
it, with copies of its own samples (each sample's outputs depend only on its own inputs), and the first ``n``
rows of each output are kept. Inputs whose per-sample shape changes from batch to batch (DLRM's ragged rows) are
not padded: there the compiler's own dynamic shapes apply, and the warm-up calls the model on the example's rows,
on half of them and on one row, so that the graphs these bring are all built before the test (the first shape's
static graph, the dynamic one a second shape brings, and the one a single row gets: torch.compile specialises a
dimension of size 1).

Whatever compiles after the warm-up is counted (torch._dynamo's graph counter), and result.json says so
(``compiles_during_test``, and a validity reason): that time may be inside the timed result.

On a CPU, inductor's freezing is switched on while the backend is open: the weights become constants that are
folded and pre-packed for oneDNN, which a model that never trains can afford (ResNet-50 at batch 1 on 1 core:
77 against 102-106 ms in fp32, 41 against 55 ms in bf16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlbench.inference import inputs
from mlbench.inference.backends import graphs


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def recompile_limit() -> int:
    """How many graphs torch.compile keeps for one function before it gives up and runs it eagerly."""
    import torch._dynamo.config as dynamo_config

    return int(getattr(dynamo_config, "recompile_limit", getattr(dynamo_config, "cache_size_limit", 8)))


def bucket_sizes(largest: int, limit: int) -> list[int]:
    """Powers of two up to ``largest`` and ``largest``; the smallest dropped past ``limit - 1`` sizes (one graph is
    left to spare), so that a batch below the smallest kept size pads up to it."""
    return graphs.batch_sizes(largest)[-max(1, limit - 1):]


class CompiledRunner:
    """``fn`` (a compiled model: tensors in, a tensor or a tuple of tensors out) called on batches padded to
    ``sizes``, each size compiled here from ``example`` (tensors) by ``warm`` calls; ``ragged`` batches (their
    rows vary) are passed as they are."""

    def __init__(self, fn: Callable[[Any], Any], example: Any, sizes: list[int], ragged: bool = False,
                 warm: int = 2):
        self.fn = fn
        self.padded_batches = 0
        self.sizes = [] if ragged else sorted(set(sizes))  # no sizes: every batch is passed as it is
        if ragged:  # rows: the example's, another count (the dynamic graph), one (specialised)
            n = inputs.length(example)
            warm_ups = [inputs.head(example, r) for r in sorted({n, max(2, n // 2), 1}, reverse=True) if 0 < r <= n]
        else:
            self.sample_shapes = graphs.sample_shapes(example)
            warm_ups = [graphs.map_inputs(example, lambda t, n=size: graphs.filled(t, n)) for size in self.sizes]
        for x in warm_ups:
            for _ in range(warm):
                fn(x)
        self.graphs_at_start = compiled_graphs()

    def __call__(self, x: Any) -> tuple[Any, ...]:
        n = inputs.length(x)
        size = next((s for s in self.sizes if s >= n), None)
        if size is None or size == n or graphs.sample_shapes(x) != self.sample_shapes:
            return graphs.as_tuple(self.fn(x))
        self.padded_batches += 1
        out = graphs.as_tuple(self.fn(graphs.map_inputs(x, lambda t: graphs.filled(t, size))))
        return tuple(o[:n] for o in out)

    def info(self) -> dict[str, Any]:
        return {"batch_sizes": self.sizes or "dynamic (ragged inputs)", "padded_batches": self.padded_batches,
                "compiles_during_test": compiled_graphs() - self.graphs_at_start}
