"""dummy: the harness tests' workload. It exercises what the image benchmarks do not: dict batches, a
lower-is-better metric (mean squared error), evaluation cadence and budget in samples, a streaming dataset
sharded by rank, and two optimizers. It trains a linear regression on generated data in about a second.

It is logged as an open-division ``bert`` run under ruleset 5.0.0 (the checker knows no "dummy"), so that
the official compliance checker runs on its log like any other; it is never a result to compare.
"""

from mlbench.definition import Benchmark

TINY = Benchmark(
    name="dummy",
    size="tiny",
    mlperf_name="bert",
    task="harness test (linear regression)",
    description="a linear regression on generated data, for the harness tests (not an MLPerf benchmark)",
    ruleset="5.0.0",
    division="open",
    dataset="generated: x ~ N(0, 1)^8, y = w.x + noise (2,048 train / 512 eval samples)",
    metric="mse",
    target=0.05,  # noise variance is 0.01: reachable in a few hundred samples at the default rate
    target_source="mlbench dummy: tests only",
    higher_is_better=False,
    eval_every_epochs=1,
    eval_every_samples=512,
    max_samples=16_384,
    runs_required=1,
    max_epochs=100,
    batch_size=32,
    hparams={"features": 8, "train_samples": 2048, "eval_samples": 512, "lr": 0.05, "noise": 0.1},
    input_shape=(8,),
    inference_target=1e-6,
    inference_targets={"99": 1e-6, "99.9": 1e-9},  # MSE of the exact model: float rounding only
    inference_target_source="tests only",
    inference_metric="mse",
    performance_sample_count=256,
    server_latency_ms=50.0,
    notes="tests only",
)

SIZES = {"tiny": TINY}
