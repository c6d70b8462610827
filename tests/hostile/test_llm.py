"""Hostile input for the language-model benchmarks (issue 28): broken Megatron token files, token ids beyond the
vocabulary, a sequence longer than the model's context, a model directory without weights, a LoRA rank of 0 or
NaN. Each is one line naming the problem and the fix, exit 1 (data) or 2 (options), no traceback, nothing
valid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from catalogue import Case, check

from mlbench.data import indexed_tokens

C4 = ("train", "llama31_8b", "--size", "reference", "--data-dir", "{tmp}/c4", "--device", "cpu",
      "--output-dir", "{tmp}/runs")
TRAIN, EVAL = "c4-train.en_6_text_document", "c4-validation-91205-samples.en_text_document"


def _c4(change=None, bad_id: int | None = None):
    """The reference's two token-file pairs (small), then ``change(folder)``."""
    def setup(tmp: Path) -> None:
        d = tmp / "c4"
        d.mkdir()
        rng = np.random.default_rng(0)
        docs = [rng.integers(0, 128_256, int(n)).tolist() for n in rng.integers(50, 300, 40)]
        if bad_id is not None:
            docs[3][7] = bad_id
        indexed_tokens.write(d / TRAIN, docs, vocab_size=200_000)
        indexed_tokens.write(d / EVAL, docs[10:15], vocab_size=128_256)
        if change:
            change(d)
    return setup


def _cut(name: str, keep: int):
    def change(d: Path) -> None:
        p = d / name
        p.write_bytes(p.read_bytes()[:keep])
    return change


LORA = ("train", "llama2_70b_lora", "--size", "tiny", "--device", "cpu", "--output-dir", "{tmp}/runs")


def _config_only(tmp: Path) -> None:
    """A model directory with config.json and pickled weights only (never loaded)."""
    d = tmp / "m"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama", "vocab_size": 320, "hidden_size": 32}')
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")


def _long_rows(tmp: Path) -> None:
    """GovReport-format files whose rows are longer than the base model's 64-token context."""
    from mlbench import registry
    from mlbench.benchmarks.llama2_70b_lora import data
    from mlbench.llm import llama

    spec = registry.get("llama2_70b_lora", "tiny").definition.hparams["tiny_model"]
    llama.save_hf_dir(llama.build(spec, init_std=0.02), tmp / "base")
    d = tmp / "gov"
    d.mkdir()
    rows = np.random.default_rng(0).integers(0, 300, (4, 80)).astype(np.int32)
    for name in (data.TRAIN_FILE, data.EVAL_FILE):
        data.write_packed(d / name, data.Packed(rows, rows.copy()))


CASES = [
    Case("c4-no-bin", C4, 1, f"{TRAIN}.bin not found", setup=_c4(lambda d: (d / f"{TRAIN}.bin").unlink())),
    Case("c4-truncated-idx", C4, 1, "is truncated", setup=_c4(_cut(f"{EVAL}.idx", 100))),
    Case("c4-index-past-bin", C4, 1, "points past its data file", setup=_c4(_cut(f"{TRAIN}.bin", 4000))),
    Case("c4-token-beyond-vocab", C4, 1, "token id 150000 is outside the model's vocabulary",
         setup=_c4(bad_id=150_000)),
    Case("seq-over-context", ("train", "llama31_8b", "--size", "tiny", "--hparam", "seq_len=100", "--device", "cpu",
                              "--output-dir", "{tmp}/runs"), 2, "sequence length 100 is over the model's context"),
    Case("lora-model-dir-without-weights", LORA + ("--model-dir", "{tmp}/m"), 1, "holds no weights",
         setup=_config_only),
    Case("lora-rank-0", LORA + ("--hparam", "lora_rank=0"), 2, "invalid LoRA rank 0"),
    Case("lora-rank-nan", LORA + ("--hparam", "lora_rank=nan"), 2, "lora_rank=nan: it must be a finite number"),
    Case("lora-rows-over-context", LORA + ("--data-dir", "{tmp}/gov", "--model-dir", "{tmp}/base"), 1,
         "over the model's context of 64",
         setup=_long_rows),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_llm_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
