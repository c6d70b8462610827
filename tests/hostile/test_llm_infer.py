"""Hostile input for LLM inference (issue 29, ``mlbench infer llama3.1-8b``): --max-new-tokens 0 / NaN / huge, a
prompt longer than the model's context, a malformed or empty cnn_eval.json, a model directory without a tokenizer
or with a truncated safetensors file, --batching for an engine that batches on its own. One line naming the
problem and the fix, exit 1 (data) or 2 (options), no traceback, nothing valid. Each case is a process of its own (seconds of imports): --max-new-tokens 0 and huge and
the other cnn_eval.json defects are checked in process by tests/llama31_8b/test_llama_infer.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalogue import Case, check

REF = ("infer", "llama3.1-8b", "--size", "reference", "--model-dir", "{tmp}/m", "--data-dir", "{tmp}/d",
       "--output-dir", "{tmp}/runs", "--quick", "--threads", "1")
TINY = ("infer", "llama3.1-8b", "--size", "tiny", "--output-dir", "{tmp}/runs")


def _files(rows=None, data: str | None = None, change=None):
    """A tiny Llama directory (context 64, tokenizer files) and a cnn_eval.json, then ``change(model_dir)``."""
    def setup(tmp: Path) -> None:
        from mlbench.llm import llama

        spec = {"vocab_size": 320, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
                "bos_token_id": 0, "eos_token_id": 1}
        m = tmp / "m"
        llama.save_hf_dir(llama.build(spec, init_std=0.02), m)
        (m / "tokenizer.json").write_text("{}")
        d = tmp / "d"
        d.mkdir()
        body = data if data is not None else json.dumps(rows or [{"input": "x", "tok_input": [0, 5], "output": "y"}])
        (d / "cnn_eval.json").write_text(body)
        if change:
            change(m)
    return setup


def _truncate(m: Path) -> None:
    f = m / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])


CASES = [
    Case("max-new-tokens-nan", TINY + ("--max-new-tokens", "nan"), 2, "invalid --max-new-tokens 'nan'"),
    Case("prompt-over-context", REF, 1, "more than the model's context of 64",
         setup=_files(rows=[{"input": "x", "tok_input": list(range(2, 62)), "output": "y"}])),
    Case("cnn-eval-malformed", REF, 1, "is not valid JSON", setup=_files(data='[{"input": "x", "tok_')),
    Case("model-dir-without-tokenizer", REF, 1, "has no tokenizer",
         setup=_files(change=lambda m: (m / "tokenizer.json").unlink())),
    Case("truncated-safetensors", REF, 1, "is truncated", setup=_files(change=_truncate)),
    Case("batching-with-another-engine", TINY + ("--backend", "openai", "--endpoint", "http://127.0.0.1:9",
                                                 "--api-model", "m", "--batching", "static"), 2,
         "--batching applies to --backend transformers only"),
    Case("batching-for-another-benchmark", ("infer", "resnet50", "--size", "tiny", "--batching", "static",
                                            "--output-dir", "{tmp}/runs"), 2,
         "--batching applies to language models' transformers engine"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_llm_infer_hostile(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
