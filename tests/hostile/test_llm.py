"""Hostile input for the language-model benchmarks (issue 28): broken Megatron token files, token ids beyond the
vocabulary. Each is one line naming the problem and the fix, exit 1, no traceback, nothing valid."""

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


CASES = [
    Case("c4-no-bin", C4, 1, f"{TRAIN}.bin not found", setup=_c4(lambda d: (d / f"{TRAIN}.bin").unlink())),
    Case("c4-truncated-idx", C4, 1, "is truncated", setup=_c4(_cut(f"{EVAL}.idx", 100))),
    Case("c4-index-past-bin", C4, 1, "points past its data file", setup=_c4(_cut(f"{TRAIN}.bin", 4000))),
    Case("c4-token-beyond-vocab", C4, 1, "token id 150000 is outside the model's vocabulary",
         setup=_c4(bad_id=150_000)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_llm_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
