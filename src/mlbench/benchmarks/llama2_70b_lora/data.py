"""Llama 2 70B LoRA data: GovReport packed into 8,192-token rows as the reference ships it (parquet), read from
``--data-dir``; or the mini/tiny sets built here in the same format.

**reference** (the MLCommons download ``scrolls_gov_report_8k``, made by the reference's ``scripts/utils.py``)::

    DIR/train-00000-of-00001.parquet        columns input_ids, attention_mask, labels: one packed row each
    DIR/validation-00000-of-00001.parquet

(one folder level below ``DIR`` is searched too). Each row is ``seq_len`` token ids: the examples
``### Summarize the following text:\\n {report}\\n ### Summary:\\n {summary}</s>`` tokenized with Llama 2's
tokenizer, concatenated and cut. Training labels are the ids themselves (``labels`` may be absent); evaluation
labels are -100 over each example's prompt and its last token, so the evaluation loss scores the summaries only.

**mini**: WordNet 3.0 (Debian ``wordnet-base``) definitions in the same template, ``### Define the word: {lemma}
({part of speech})\\n ### Definition:\\n {gloss}</s>``, tokenized with the mini base model's tokenizer (the
llama31_8b mini model, pre-trained on Python's documentation), 1 synset in 20 held out for evaluation; **tiny**:
generated word runs with a tiny tokenizer. Both are written as the reference's parquet files, with the
tokenizer, into the cache (``~/.cache/mlbench/llama2_70b_lora/``). ``info.json`` records what a unigram model of
the training tokens scores on the evaluation labels.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlbench.data import download
from mlbench.data.folders import build_once
from mlbench.definition import Benchmark
from mlbench.errors import DataError
from mlbench.llm import wordnet

FORMAT_VERSION = 1
TRAIN_FILE, EVAL_FILE = "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"
WORDNET_DIR = wordnet.WORDNET_DIR
IGNORE = -100
INFO = "info.json"
_FIX = ("pass --data-dir DIR holding the reference's GovReport files (train-00000-of-00001.parquet and "
        "validation-00000-of-00001.parquet: the MLCommons download scrolls_gov_report_8k)")


@dataclass
class Packed:
    """Rows of ``seq_len`` token ids and their labels (int32; -100 where not scored)."""

    input_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def _pyarrow():
    import pyarrow.parquet as pq  # a missing pyarrow is named with its install command (errors.explain)

    return pq


def read_packed(path: Path, *, seq_len: int, vocab_size: int, context: int, what: str) -> Packed:
    """A packed parquet file, every row checked: ``seq_len`` ids (none over the model's ``context``), ids in the
    vocabulary, labels -100 or ids. DataError naming the file, the row and the fix otherwise."""
    pq = _pyarrow()
    if not path.is_file():
        raise DataError(f"{what}: {path} not found", _FIX)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(f"{what}: {path} is not a readable parquet file ({str(exc).splitlines()[0][:200]})",
                        _FIX) from exc
    if "input_ids" not in table.column_names:
        raise DataError(f"{what}: {path} has no input_ids column (columns: {', '.join(table.column_names)})", _FIX)
    if table.num_rows == 0:
        raise DataError(f"{what}: {path} holds no rows", _FIX)
    ids = _rows(table, "input_ids", path, what)
    labels = _rows(table, "labels", path, what) if "labels" in table.column_names else None
    lengths = {len(r) for r in ids}
    longest = max(lengths)
    if longest > context:
        row = next(i for i, r in enumerate(ids) if len(r) == longest)
        raise DataError(f"{what}: row {row} of {path} has {longest} tokens, over the model's context of {context}",
                        "use rows packed to the benchmark's sequence length (8,192 for the reference)")
    if lengths != {seq_len}:
        row = next(i for i, r in enumerate(ids) if len(r) != seq_len)
        raise DataError(f"{what}: row {row} of {path} has {len(ids[row])} tokens, not the packed {seq_len}",
                        "use the reference's packed files (every row the same length)")
    x = np.asarray(ids, dtype=np.int64)
    y = x.copy() if labels is None else np.asarray(labels, dtype=np.int64)
    if y.shape != x.shape:
        raise DataError(f"{what}: {path}'s labels do not match its input_ids row for row", _FIX)
    for name, arr, allowed in (("input_ids", x, None), ("labels", y, IGNORE)):
        bad = (arr < 0) | (arr >= vocab_size)
        if allowed is not None:
            bad &= arr != allowed
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise DataError(f"{what}: {path} row {row} holds {name} {int(arr[row, col])}, outside the model's "
                            f"vocabulary (0..{vocab_size - 1})",
                            "the data was tokenized with another tokenizer: use the base model's own")
    return Packed(x.astype(np.int32), y.astype(np.int32))


def _rows(table, column: str, path: Path, what: str) -> list:
    col = table.column(column).to_pylist()
    if any(not isinstance(r, list) for r in col):
        raise DataError(f"{what}: {path}'s {column} column is not a list of token ids per row", _FIX)
    return col


def write_packed(path: Path, packed: Packed) -> None:
    """``packed`` as the reference's parquet file (input_ids, attention_mask, labels)."""
    import pyarrow as pa

    pq = _pyarrow()
    table = pa.table({"input_ids": packed.input_ids.tolist(),
                      "attention_mask": np.ones_like(packed.input_ids).tolist(),
                      "labels": packed.labels.tolist()})
    pq.write_table(table, path)


def find_files(root: Path) -> tuple[Path, Path]:
    """The training and evaluation parquet files in ``root`` (or one folder below it)."""
    if not root.is_dir():
        raise DataError(f"data folder {root} not found", _FIX)
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (d / TRAIN_FILE).is_file() or (d / EVAL_FILE).is_file():
            return d / TRAIN_FILE, d / EVAL_FILE
    raise DataError(f"{root} lacks the GovReport files {TRAIN_FILE} and {EVAL_FILE}", _FIX)


# ---------------------------------------------------------------- packing (mini/tiny)

def pack(examples: list[tuple[list[int], list[int]]], seq_len: int, *, score_prompt: bool) -> Packed:
    """Examples (prompt ids, answer ids ending with the end token) concatenated and cut into rows of ``seq_len``
    (the remainder dropped), as the reference's ``group_texts``. Training rows score every token
    (``score_prompt``); evaluation rows score the answers only, not their last token (the reference's mask)."""
    ids: list[int] = []
    labels: list[int] = []
    for prompt, answer in examples:
        ids += prompt + answer
        if score_prompt:
            labels += prompt + answer
        else:
            labels += [IGNORE] * len(prompt) + answer[:-1] + [IGNORE]
    n = len(ids) // seq_len
    if n == 0:
        raise DataError(f"{len(ids)} tokens cannot fill one row of {seq_len}", "use more examples")
    x = np.asarray(ids[:n * seq_len], dtype=np.int32).reshape(n, seq_len)
    y = np.asarray(labels[:n * seq_len], dtype=np.int32).reshape(n, seq_len)
    return Packed(x, y)


PROMPT = "### Define the word: {word} ({pos})\n ### Definition:\n"


def wordnet_examples(folder: Path = WORDNET_DIR) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training, held-out) (prompt, definition) pairs: one per synset, its first lemma, the gloss up to its
    examples; 1 synset in 20 held out (by a hash of its offset)."""
    train, held = [], []
    for s in wordnet.synsets(folder, needed_by="llama2_70b_lora mini fine-tunes on them; it"):
        pair = (PROMPT.format(word=s.lemmas[0], pos=wordnet.POS_NAMES.get(s.pos, s.pos)), " " + s.definition)
        (held if s.held_out() else train).append(pair)
    return train, held


_WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
          "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def tiny_pretraining_text(n: int = 400, seed: int = 5) -> list[str]:
    """The tiny base model's pre-training text: lines of words in alphabet order from random starts."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        k = rng.randrange(len(_WORDS))
        docs.append(" ".join(_WORDS[(k + i) % len(_WORDS)] for i in range(rng.randint(5, 15))) + "\n")
    return docs


def tiny_examples(n: int = 600, seed: int = 3) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Generated pairs: ``### Run: {word}``, then the next three words in alphabet order (what the tiny base model
    learned to continue; the adapters learn the template around it)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        k = rng.randrange(len(_WORDS))
        pairs.append((f"### Run: {_WORDS[k]}", " " + " ".join(_WORDS[(k + i) % len(_WORDS)] for i in (1, 2, 3))))
    cut = n // 10
    return pairs[cut:], pairs[:cut]


# ---------------------------------------------------------------- building (mini/tiny)

def _params(bench: Benchmark) -> dict[str, Any]:
    hp = bench.hparams
    return {"version": FORMAT_VERSION, "size": bench.size, "seq_len": hp["seq_len"], "base": hp.get("base_model"),
            "eval_examples": hp.get("eval_examples")}


def data_root(bench: Benchmark) -> Path:
    digest = hashlib.sha256(json.dumps(_params(bench), sort_keys=True).encode()).hexdigest()[:10]
    return download.cache_dir("llama2_70b_lora", f"{bench.size}-{digest}")


def ensure_data(bench: Benchmark, tokenizer_dir: Path, say=None) -> Path:
    """The folder of this (mini/tiny) size's parquet files, tokenized with ``tokenizer_dir``; built when missing."""
    return build_once(data_root(bench), lambda out: build(bench, tokenizer_dir, out), marker=INFO, say=say,
                      what=f"llama2_70b_lora {bench.size} data")


def build(bench: Benchmark, tokenizer_dir: Path, out: Path) -> dict[str, Any]:
    from mlbench.llm import tokenizer

    seq_len = bench.hparams["seq_len"]
    enc = tokenizer.Encoder(tokenizer_dir)
    train_pairs, eval_pairs = tiny_examples() if bench.size == "tiny" else wordnet_examples()
    rng = random.Random(17)
    rng.shuffle(train_pairs)
    rng.shuffle(eval_pairs)
    eval_pairs = eval_pairs[:bench.hparams.get("eval_examples", len(eval_pairs))]

    def encode(pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        prompts = list(enc.documents([p for p, _ in pairs], bos=True, eos=False))
        answers = list(enc.documents([a for _, a in pairs], bos=False, eos=True))
        return list(zip(prompts, answers))

    train = pack(encode(train_pairs), seq_len, score_prompt=True)
    ev = pack(encode(eval_pairs), seq_len, score_prompt=False)
    write_packed(out / TRAIN_FILE, train)
    write_packed(out / EVAL_FILE, ev)
    counts = np.bincount(train.input_ids.ravel(), minlength=enc.vocab_size).astype(np.float64) + 1
    scored = ev.labels[:, 1:][ev.labels[:, 1:] != IGNORE]
    unigram = float(-np.log(counts / counts.sum())[scored].mean()) if scored.size else math.nan
    report = {**_params(bench), "train_rows": len(train), "eval_rows": len(ev), "train_examples": len(train_pairs),
              "eval_examples": len(eval_pairs), "eval_scored_tokens": int(scored.size),
              "unigram_eval_loss": unigram}
    (out / INFO).write_text(json.dumps(report, indent=1) + "\n")
    return report
