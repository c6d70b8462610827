"""Helpers for the BERT training tests: small shards in the MLPerf format, a small model definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlbench.benchmarks.bert.definition import TINY

SEQ, PREDS, VOCAB = 16, 3, 64

# A very small BERT on SEQ-token samples (the tiny size with its model shrunk further).
SMALL_BENCH = TINY.derive(
    hparams={"model": {**TINY.hparams["model"], "vocab_size": VOCAB, "hidden_size": 16, "intermediate_size": 32,
                       "num_attention_heads": 2, "max_position_embeddings": SEQ},
             "seq_len": SEQ, "max_predictions": PREDS, "eval_samples": 24},
    input_shape=(SEQ,), batch_size=8)


def sample_arrays(n: int, first_id: int = 0, seq: int = SEQ, preds: int = PREDS, vocab: int = VOCAB,
                  seed: int = 0, dtype=np.int16) -> dict[str, np.ndarray]:
    """``n`` samples whose ``input_ids[:, 1:4]`` spell a unique sample number (``first_id`` + i), for tracking."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (n, seq)).astype(dtype)
    ids[:, 0] = 2
    number = first_id + np.arange(n)  # three base-(vocab - 5) digits in tokens 1-3, all valid token ids
    base = vocab - 5
    for d in range(3):
        ids[:, 1 + d] = 5 + (number // base ** d) % base
    length = rng.integers(max(5, seq // 2), seq + 1, n)
    mask = (np.arange(seq)[None] < length[:, None]).astype(np.int8)
    ids = ids * mask
    seg = ((np.arange(seq)[None] >= length[:, None] // 2) & (mask > 0)).astype(np.int8)
    pos = np.zeros((n, preds), dtype)
    lab = np.zeros((n, preds), dtype)
    for i in range(n):
        k = rng.integers(1, preds + 1)
        p = np.sort(rng.choice(np.arange(2, length[i]), k, replace=False))
        pos[i, :k] = p
        lab[i, :k] = rng.integers(5, vocab, k)
    nsp = rng.integers(0, 2, n).astype(np.int8)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": seg, "masked_lm_positions": pos,
            "masked_lm_ids": lab, "next_sentence_labels": nsp}


def make_dataset(root: Path, files: int = 3, per_file: int = 20, eval_n: int = 24) -> Path:
    """``root/hdf5/training/*.hdf5`` and ``root/hdf5/eval/part_eval.hdf5`` with unique sample numbers."""
    from mlbench.benchmarks.bert.shards import write_shard

    for f in range(files):
        write_shard(root / "hdf5" / "training" / f"part-{f:05d}-of-{files:05d}.hdf5",
                    sample_arrays(per_file, first_id=f * per_file, seed=f))
    write_shard(root / "hdf5" / "eval" / "part_eval.hdf5", sample_arrays(eval_n, first_id=10_000, seed=99))
    return root


def sample_ids(batches, vocab: int = VOCAB) -> list[int]:
    base = vocab - 5
    return [sum(int(row[1 + d] - 5) * base ** d for d in range(3)) for b in batches for row in b["input_ids"]]
