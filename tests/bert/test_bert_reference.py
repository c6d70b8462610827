"""BERT at the reference definition (closed division, ruleset 5.0.0, LAMB keys, sample cadence, phase-1
checkpoint from DIR/phase1) on tiny files in the MLPerf layout, with only the network shrunk: the MLPerf log
must pass the official compliance checker for closed bert, which requires an eval_accuracy >= 0.720."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlbench.benchmarks.bert import definition, shards
from mlbench.benchmarks.bert.model import build_pretraining_model
from mlbench.cli import main as cli_main

SEQ, PRED, VOCAB = 512, 76, 64


def _samples(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sequences of random tokens whose masked positions hold token 7 four times in five and token 8 else:
    a model that learns the bias scores about 0.8 (above 0.720, below the checker's bound of 1.0)."""
    lengths = rng.integers(64, SEQ + 1, n)
    ids = np.zeros((n, SEQ), np.int32)
    mask = np.zeros((n, SEQ), np.int8)
    seg = np.zeros((n, SEQ), np.int8)
    pos = np.zeros((n, PRED), np.int16)
    lm = np.zeros((n, PRED), np.int16)
    for i, k in enumerate(lengths):
        ids[i, :k] = rng.integers(10, VOCAB, k)
        ids[i, 0], ids[i, k - 1] = 2, 3
        mask[i, :k] = 1
        seg[i, k // 2:k] = 1
        npred = int(rng.integers(5, 20))
        p = np.sort(rng.choice(np.arange(1, k - 1), npred, replace=False))
        pos[i, :npred] = p
        lm[i, :npred] = np.where(rng.random(npred) < 0.8, 7, 8)
        ids[i, p] = 4  # [MASK]
    return {"input_ids": ids, "input_mask": mask, "segment_ids": seg, "masked_lm_positions": pos,
            "masked_lm_ids": lm, "next_sentence_labels": rng.integers(0, 2, n).astype(np.int8)}


@pytest.mark.slow
def test_reference_definition_log_passes_closed_compliance(tmp_path, monkeypatch):
    fast = definition.REFERENCE.derive(
        batch_size=8, eval_every_samples=64, max_samples=1024,
        hparams={"model": {**definition.SMALL, "vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64,
                           "num_hidden_layers": 1, "max_position_embeddings": SEQ},
                 "eval_samples": 64, "lr": 0.02, "training_steps": 128})
    monkeypatch.setitem(definition.SIZES, "reference", fast)
    root = tmp_path / "bert"
    rng = np.random.default_rng(0)
    for i in range(2):
        shards.write_shard(root / "hdf5/training-4320/hdf5_4320_shards_varlength" / f"part_{i:05d}.hdf5",
                           _samples(256, rng))
    shards.write_shard(root / "hdf5/eval_varlength/eval_0.hdf5", _samples(64, rng))
    (root / "phase1").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": build_pretraining_model(fast).state_dict()}, root / "phase1" / "model.ckpt-28252.pt")

    out = tmp_path / "runs"
    torch.set_num_threads(2)
    code = cli_main(["train", "bert", "--size", "reference", "--device", "cpu", "--seed", "0", "--workers", "0",
                     "--data-dir", str(root), "--output-dir", str(out), "--log-every", "50", "--no-checkpoint"])
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    result = json.loads((run_dir / "result.json").read_text())
    run = result["runs"][0]
    assert code == 0 and run["status"] == "success", run["reason"]
    assert fast.target <= run["quality"] < 1.0 and result["division"] == "closed"
    assert run["compliance"]["passed"], run["compliance"]["output"]
    log = run_dir / "run_1" / "mlperf_log.txt"
    events = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in log.read_text().splitlines()]
    acc = [e for e in events if e["key"] == "eval_accuracy"]
    assert [a["metadata"]["epoch_num"] for a in acc] == [64 * (i + 1) for i in range(len(acc))]
    assert {"opt_lamb_epsilon", "opt_lamb_beta_1", "num_warmup_steps"} <= {e["key"] for e in events}
    proc = subprocess.run([sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "training",
                           "--ruleset", "5.0.0", str(log)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Path(run_dir / "run_1" / "mlperf_log.txt").is_file()
