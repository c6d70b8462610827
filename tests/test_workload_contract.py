"""The workload contract, exercised by the dummy workload: dict batches, a lower-is-better metric, evaluation
cadence and budget in samples, several optimizers, a stream sharded by rank. No image benchmark involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlbench import registry
from mlbench.training.batches import DataSpec
from mlbench.training.recipe import OptimArgs, StepContext
from mlbench.training.workload import Optimizers, members
from support import mlbench


def _run_dir(out: Path) -> Path:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def _events(log: Path) -> list[dict]:
    return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in log.read_text().splitlines() if ":::MLLOG" in line]


def test_dummy_trains_to_a_lower_is_better_target_by_samples(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("train", "dummy", "--size", "tiny", "--output-dir", str(out), "--seed", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((_run_dir(out) / "result.json").read_text())
    run = result["runs"][0]
    assert run["status"] == "success" and "mse <= 0.05" in run["reason"]
    evals = run["evals"]
    assert all(e["samples"] % 512 == 0 for e in evals[:-1])  # the sample cadence of the definition
    assert evals[-1]["quality"] <= 0.05 and set(evals[-1]["metrics"]) == {"mse", "rmse"}
    assert all(a["quality"] > 0.05 for a in evals[:-1])  # it stopped at the first evaluation on target
    # samples counted from the dict batches (32 each), not from the number of keys
    assert run["samples"] == evals[-1]["samples"] and run["samples"] % 32 == 0 and run["samples"] >= 512
    assert run["compliance"]["passed"], run["compliance"]["output"]
    ev = _events(_run_dir(out) / "run_1" / "mlperf_log.txt")
    acc = [e for e in ev if e["key"] == "eval_accuracy"]
    assert [a["metadata"]["epoch_num"] for a in acc] == [e["samples"] for e in evals]
    assert [e for e in ev if e["key"] == "block_start"][0]["metadata"]["samples_count"] == 0
    assert not [e for e in ev if e["key"] == "epoch_start"]


def test_sample_budget_ends_the_run_as_aborted(tmp_path):
    out = tmp_path / "runs"
    # a learning rate of 1e-6 never gets the error down: the 16,384-sample budget runs out
    p = mlbench("train", "dummy", "--size", "tiny", "--output-dir", str(out), "--lr", "1e-6", "--seed", "1")
    assert p.returncode == 1
    run = json.loads((_run_dir(out) / "result.json").read_text())["runs"][0]
    assert run["status"] == "aborted" and "sample budget (16384 samples)" in run["reason"]
    assert run["samples"] == 16384 and len(run["evals"]) == 16384 // 512


def test_two_processes_share_the_stream_and_the_cadence(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("train", "dummy", "--size", "tiny", "--output-dir", str(out), "--nproc", "2", "--seed", "1",
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((_run_dir(out) / "result.json").read_text())
    run = result["runs"][0]
    assert result["world_size"] == 2 and run["status"] == "success"
    assert all(e["samples"] % 512 == 0 for e in run["evals"][:-1])
    assert run["metrics"]["dist/params_in_sync"] is True


def test_dummy_is_hidden_from_lists_but_reachable():
    assert "dummy" not in registry.names() and "dummy" in registry.names(hidden=True)
    assert registry.get("dummy", "tiny").definition.higher_is_better is False


def test_optimizers_step_and_restore_together():
    wl = registry.get("dummy", "tiny").workload()
    model = wl.build_model()
    opt, sched = wl.build_optimizer(model, OptimArgs(global_batch_size=32, steps_per_epoch=1, epochs=1))
    assert isinstance(opt, Optimizers) and len(members(opt)) == 2
    batch = wl.synthetic_batch(32, StepContext(device=torch.device("cpu")))
    loss, parts = wl.loss(model, batch, StepContext(device=torch.device("cpu")))
    loss.backward()
    state = opt.state_dict()
    opt.step()
    assert float(model.bias.detach()) != 0.0 and float(model.weight.detach().abs().sum()) != 0.0
    opt.load_state_dict(state)
    assert wl.count_samples(batch) == 32 and set(parts) == {"mse"}


@pytest.mark.parametrize("world", [1, 2, 3])
def test_stream_shards_are_disjoint_and_cover_the_eval_set(world):
    wl = registry.get("dummy", "tiny").workload()
    seen = []
    for rank in range(world):
        data = wl.build_data(DataSpec(batch_size=32, eval_batch_size=100, rank=rank, world_size=world))
        seen += [tuple(row.tolist()) for b in data.eval for row in b["x"]]
        assert len(list(data.train)) == len(data.train)
    assert len(seen) == len(set(seen)) == 512


def test_warm_up_runs_the_evaluation_on_two_synthetic_shapes():
    """The warm-up before run_start also evaluates (untimed compile of the evaluation's graphs): at the
    evaluation batch size and half of it, then the model is back in training mode with its weights restored."""
    from mlbench.training import harness

    wl = registry.get("dummy", "tiny").workload()
    model = wl.build_model()
    opt, _ = wl.build_optimizer(model, OptimArgs(global_batch_size=32, steps_per_epoch=1, epochs=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    wl.warm_up_evaluation = lambda m, batches, ctx: seen.extend(wl.count_samples(b) for b in batches)
    harness._warm_up(model, model, opt, wl, 32, StepContext(device=torch.device("cpu")), eval_batch_size=100)
    assert seen == [100, 50] and model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_detection_evaluation_warm_up_scores_nothing():
    """RetinaNet's (and Mask R-CNN's) evaluation scores against the COCO ground truth, which knows no synthetic
    image: its warm-up runs the detector in eval mode and records nothing."""
    wl = registry.get("retinanet", "tiny").workload()
    model = wl.build_model()
    ctx = StepContext(device=torch.device("cpu"))
    wl.warm_up_evaluation(model, [wl.synthetic_batch(2, ctx)], ctx)
    assert not model.training
