"""llama2_70b_lora: GovReport's packed parquet files (written here in the reference's format), the LoRA model on a
base read from a Hugging Face directory, the tiny size end to end, and the reference's keys through the closed
6.1.0 checker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlbench import registry
from mlbench.benchmarks.llama2_70b_lora import data, lora
from mlbench.errors import ConfigError, DataError
from mlbench.llm import llama
from support import check_closed_llm_log, mlbench

SPEC = registry.get("llama2_70b_lora", "tiny").definition.hparams["tiny_model"]


def _packed(rows: int, seq: int, vocab: int, masked: bool) -> data.Packed:
    rng = np.random.default_rng(rows)
    x = rng.integers(0, vocab, (rows, seq)).astype(np.int32)
    y = x.copy()
    if masked:
        y[:, : seq // 2] = data.IGNORE
    return data.Packed(x, y)


def test_packed_parquet_round_trips_and_bad_rows_are_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / data.EVAL_FILE
    data.write_packed(p, _packed(5, 16, 100, masked=True))
    assert pq.read_table(p).column_names == ["input_ids", "attention_mask", "labels"]  # the reference's columns
    got = data.read_packed(p, seq_len=16, vocab_size=100, context=64, what="evaluation data")
    assert got.input_ids.shape == (5, 16) and (got.labels[:, :8] == data.IGNORE).all()
    # training rows may come without labels: the ids are the labels
    pq.write_table(pa.table({"input_ids": [[1, 2, 3, 4]] * 3}), tmp_path / "t.parquet")
    t = data.read_packed(tmp_path / "t.parquet", seq_len=4, vocab_size=10, context=8, what="training data")
    assert (t.labels == t.input_ids).all()
    cases = [
        (lambda: data.read_packed(p, seq_len=16, vocab_size=50, context=64, what="e"), "outside the model's vocab"),
        (lambda: data.read_packed(p, seq_len=16, vocab_size=100, context=8, what="e"), "over the model's context of 8"),
        (lambda: data.read_packed(p, seq_len=12, vocab_size=100, context=64, what="e"), "not the packed 12"),
        (lambda: data.read_packed(tmp_path / "none.parquet", seq_len=4, vocab_size=9, context=9, what="e"), "not found"),
    ]
    (tmp_path / "text.parquet").write_text("not parquet\n")
    cases.append((lambda: data.read_packed(tmp_path / "text.parquet", seq_len=4, vocab_size=9, context=9, what="e"),
                  "not a readable parquet file"))
    for call, words in cases:
        with pytest.raises(DataError, match=words):
            call()


def test_evaluation_rows_score_the_answers_only_as_the_reference_masks_them():
    packed = data.pack([([1, 2, 3], [4, 5, 6]), ([7, 8], [9, 10])], 5, score_prompt=False)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert packed.labels.tolist() == [[-100, -100, -100, 4, 5], [-100, -100, -100, 9, -100]]


def _base_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return llama.save_hf_dir(llama.build(SPEC, init_std=0.02), tmp_path / "base")


def test_adapters_start_from_the_base_model_and_only_they_train(tmp_path):
    from transformers import AutoModelForCausalLM

    base = _base_dir(tmp_path)
    wl = registry.get("llama2_70b_lora", "tiny").workload()
    wl.model_dir = str(base)
    model = wl.place_model(wl.build_model(), torch.device("cpu"), False).eval()
    x = torch.randint(0, SPEC["vocab_size"], (2, 10))
    ref = AutoModelForCausalLM.from_pretrained(base).eval()
    torch.testing.assert_close(model(input_ids=x).logits, ref(input_ids=x).logits)  # B = 0: the base's output
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable if "lora_A" in n} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert set(lora.base_parameters(model)) == set(ref.state_dict()) - {"model.rotary_emb.inv_freq"}


def test_lora_rank_and_model_dir_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="must be a finite number"):
        registry.get("llama2_70b_lora", "tiny", {"lora_rank": float("nan")})
    with pytest.raises(ConfigError, match="LoRA rank 0"):
        registry.get("llama2_70b_lora", "tiny", {"lora_rank": 0}).workload()
    with pytest.raises(ConfigError, match="no tunable hyper-parameter"):
        registry.get("llama2_70b_lora", "tiny", {"learning_rate": 1})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model_type": "llama", **SPEC}))
    wl = registry.get("llama2_70b_lora", "tiny").workload()
    wl.model_dir = str(tmp_path / "empty")
    with pytest.raises(DataError, match="holds no weights"):
        wl.build_model()


@pytest.mark.slow
def test_tiny_fine_tunes_to_its_target(tmp_path):
    proc = mlbench("train", "llama2_70b_lora", "--size", "tiny", "--seed", "1", "--device", "cpu",
                   "--output-dir", str(tmp_path / "runs"), env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert result["status"] == "success" and result["runs"][0]["compliance"]["passed"]
    assert result["metrics"]["throughput/tokens_per_s"] > 0
    assert result["speed"]["trainable_parameters"] > 0


def test_the_reference_keys_pass_the_closed_6_1_0_checker(tmp_path):
    wl = registry.get("llama2_70b_lora", "reference").workload()
    assert wl.evaluations_skipped(8) == 3  # floor(0.125 x 8 + 2)
    check = check_closed_llm_log(tmp_path / "mlperf_log.txt", "llama2_70b_lora", global_batch=8, local_batch=1,
                                 train_samples=3901, eval_samples=173, eval_at=1536, quality=0.92)
    assert check["passed"], check["output"]
