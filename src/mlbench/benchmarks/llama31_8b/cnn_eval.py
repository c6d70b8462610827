"""The reference's evaluation set, ``cnn_eval.json`` (mlcommons/inference ``language/llama3.1-8b``): a JSON list of
13,368 rows, each an object with ``input`` (the prompt as text, the Llama 3.1 chat template around a CNN/DailyMail
article), ``tok_input`` (that prompt's token ids) and ``output`` (the reference summary). The reference reads it
with ``pandas.read_json`` and feeds ``tok_input`` to the model; we read it as untrusted JSON and check every row:
a malformed or empty file, a row without one of the keys, token ids that are not whole numbers in the
vocabulary, or a prompt that leaves no room for the output in the model's context each stop the run with one line
naming the file, the row and the fix.

``write`` makes a file in the same format (the tests' small files, the tiny size's generated set).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbench.errors import DataError
from mlbench.untrusted import load_json

FILE = "cnn_eval.json"
KEYS = ("input", "tok_input", "output")
HINT = ("pass the reference's cnn_eval.json (a JSON list of objects with input, tok_input and output; "
        "mlcommons/inference language/llama3.1-8b README: download_cnndm.py / the MLCommons R2 bucket)")


@dataclass(frozen=True)
class Row:
    prompt: list[int]  # tok_input
    text: str  # input
    reference: str  # output


def locate(data_dir: str | Path) -> Path:
    """``cnn_eval.json`` in ``data_dir`` (or ``data_dir`` itself when it is that file)."""
    p = Path(data_dir)
    return p if p.is_file() else p / FILE


def load(path: str | Path, *, vocab_size: int, context_length: int, max_new_tokens: int,
         max_rows: int | None = None) -> list[Row]:
    """Every row of ``path`` (the first ``max_rows`` when given), checked (module docstring)."""
    path = Path(path)
    data = load_json(path, "evaluation set", expect=list, hint=HINT)
    if not data:
        raise DataError(f"evaluation set {path} holds no rows (an empty list)", HINT)
    rows: list[Row] = []
    max_prompt = context_length - max_new_tokens
    for i, row in enumerate(data[:max_rows] if max_rows else data):
        where = f"{path} row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{where} is a JSON {type(row).__name__}, not an object with {', '.join(KEYS)}", HINT)
        missing = [k for k in KEYS if k not in row]
        if missing:
            raise DataError(f"{where} has no '{missing[0]}' (each row needs {', '.join(KEYS)})", HINT)
        if not isinstance(row["input"], str) or not isinstance(row["output"], str):
            raise DataError(f"{where}: 'input' and 'output' must be text", HINT)
        ids = row["tok_input"]
        if not isinstance(ids, list) or not ids:
            raise DataError(f"{where}: 'tok_input' must be a non-empty list of token ids", HINT)
        if not all(type(t) is int and 0 <= t < vocab_size for t in ids):
            bad = next(t for t in ids if not (type(t) is int and 0 <= t < vocab_size))
            raise DataError(f"{where}: token id {bad!r} is not a whole number in the model's vocabulary "
                            f"(0..{vocab_size - 1})", "the file was tokenized for another model: use that model, "
                            "or the cnn_eval.json made for this one")
        if len(ids) > max_prompt:
            raise DataError(f"{where}: its prompt has {len(ids)} tokens; with {max_new_tokens} new tokens it needs "
                            f"{len(ids) + max_new_tokens}, more than the model's context of {context_length}",
                            f"use a model with a longer context, --max-new-tokens {context_length - len(ids)} or less "
                            "(if that is above 0), or remove the row")
        rows.append(Row(list(ids), row["input"], row["output"]))
    return rows


def write(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` (dicts with input, tok_input, output) as a cnn_eval.json file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path
