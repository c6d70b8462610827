"""``--cuda-graphs``: the graph runner's batching logic, checked on the CPU with a stand-in for CUDA capture
(a "graph" that recomputes into the captured output tensors, as a replay writes into them), and the options'
errors. The CUDA capture itself runs only on a GPU (benchmarks/gpu_check.sh)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from mlbench.errors import ConfigError
from mlbench.inference import inputs
from mlbench.inference.backends import graphs


class FakeGraph:
    def __init__(self, fn, static):
        self.fn, self.static, self.replays = fn, static, 0
        self.out = fn(static)

    def replay(self):
        self.replays += 1
        new = self.fn(self.static)
        for o, n in zip(self.out if isinstance(self.out, tuple) else (self.out,),
                        new if isinstance(new, tuple) else (new,), strict=True):
            o.copy_(n)


def fake_capture(fn, static):
    g = FakeGraph(fn, static)
    return g, g.out


def model(x):
    return x.flatten(1).sum(1, keepdim=True) * 2 + 1, x.flatten(1).amax(1)


def test_batch_sizes():
    assert graphs.batch_sizes(1) == [1]
    assert graphs.batch_sizes(8) == [1, 2, 4, 8]
    assert graphs.batch_sizes(12) == [1, 2, 4, 8, 12]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12])
def test_replay_matches_eager_for_every_batch(n):
    torch.manual_seed(0)
    example = torch.randn(12, 3, 4, 4)
    runner = graphs.GraphRunner(model, example, graphs.batch_sizes(12), capture=fake_capture)
    assert runner.sizes == [1, 2, 4, 8, 12]
    runner(torch.randn(12, 3, 4, 4))  # a full batch first: its rows stay behind in the padding
    x = torch.randn(n, 3, 4, 4)
    out = runner(x)
    ref = model(x)
    assert [o.shape[0] for o in out] == [n, n]
    for a, b in zip(out, ref, strict=True):
        assert torch.allclose(a, b)
    used = next(s for s in runner.sizes if s >= n)
    assert runner.graphs[used][0].replays == (2 if used == 12 else 1)
    assert runner.eager_batches == 0


def test_outputs_are_copies_not_the_static_buffers():
    runner = graphs.GraphRunner(model, torch.ones(4, 2), [4], capture=fake_capture)
    first = runner(torch.ones(4, 2))[0].clone()
    kept = runner(torch.ones(4, 2))[0]
    runner(torch.full((4, 2), 5.0))  # a later replay must not change what an earlier call returned
    assert torch.equal(kept, first)


def test_other_shapes_and_larger_batches_run_eagerly():
    runner = graphs.GraphRunner(model, torch.zeros(4, 3), [1, 2, 4], capture=fake_capture)
    x = torch.randn(6, 3)
    assert torch.allclose(runner(x)[0], model(x)[0])
    y = torch.randn(2, 5)
    assert torch.allclose(runner(y)[0], model(y)[0])
    z = torch.randn(2, 3, dtype=torch.float64)
    assert torch.allclose(runner(z)[0], model(z)[0])
    assert runner.eager_batches == 3
    assert runner.info() == {"batch_sizes": [1, 2, 4], "eager_batches": 3}


def test_named_inputs():
    def named(a, b):
        return a * 10 + b

    runner = graphs.GraphRunner(lambda x: inputs.call(named, x), {"a": torch.ones(4, 2), "b": torch.zeros(4, 2)},
                                [4], capture=fake_capture)
    out = runner({"a": torch.full((3, 2), 2.0), "b": torch.ones(3, 2)})
    assert out[0].shape == (3, 2) and torch.all(out[0] == 21)


def test_static_inputs_keep_channels_last():
    example = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    runner = graphs.GraphRunner(lambda t: t.mean((1, 2, 3)), example, [1, 4], capture=fake_capture)
    for _, static, _ in runner.graphs.values():
        assert static.is_contiguous(memory_format=torch.channels_last)


def test_workers_sharing_the_graphs_get_their_own_results():
    runner = graphs.GraphRunner(lambda t: t * 3, torch.zeros(8, 1), [8], capture=fake_capture)
    errors = []

    def work(k):
        for _ in range(200):
            x = torch.full((5, 1), float(k))
            if not torch.equal(runner(x)[0], x * 3):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_ragged_inputs_are_refused():
    batch = inputs.Ragged({"dense": np.zeros((5, 2), np.float32)}, np.array([0, 2, 5]))
    with pytest.raises(ConfigError, match="ragged"):
        graphs.check_inputs(batch)
    graphs.check_inputs(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(("benchmark", "why"), [("rnnt", "greedy decoding is a loop"),
                                                ("maskrcnn", "different number of boxes per image")])
def test_tasks_whose_model_has_data_dependent_shapes_are_refused(benchmark, why):
    """Refused by name, before any capture (a capture would fail there with a raw CUDA error), on any device."""
    from mlbench import registry
    from mlbench.inference.task import TaskOptions, build

    task = build(registry.get(benchmark, "tiny"), TaskOptions())
    with pytest.raises(ConfigError, match=f"cannot replay {benchmark}'s model: .*{why}") as err:
        graphs.check_task(task)
    assert err.value.hint == "drop --cuda-graphs"
    graphs.check_task(build(registry.get("resnet50", "tiny"), TaskOptions()))  # a fixed-shape model passes


@pytest.mark.parametrize("args, message", [
    (["--backend", "onnxruntime"], "applies to the pytorch backend only"),
    (["--compile"], "together are not supported"),
    ([], "needs a CUDA device"),
])
def test_cli_refuses_cuda_graphs_where_they_cannot_run(infer, args, message):
    code, result, out = infer("--size", "tiny", "--quick", "--cuda-graphs", "--device", "cpu", *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out
    assert result is None or (result["status"] == "failed" and not result["valid"])


def test_graphs_larger_than_the_example():
    """The SUT's batch can exceed the example (a dataset smaller than the batch): static inputs repeat its rows."""
    runner = graphs.GraphRunner(model, torch.randn(3, 2), graphs.batch_sizes(8), capture=fake_capture)
    assert runner.sizes == [1, 2, 4, 8]
    x = torch.randn(7, 2)
    assert torch.allclose(runner(x)[0], model(x)[0]) and runner.eager_batches == 0
