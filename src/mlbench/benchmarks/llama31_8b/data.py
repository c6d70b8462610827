"""Llama 3.1 8B pre-training data: the reference's files found in ``--data-dir``, or the mini/tiny files built here.

**reference**: the folder the MLPerf download (or the reference's ``preprocess.sh``) fills::

    DIR/c4-train.en_6_text_document.bin   .idx      (the training shard the reference trains on)
    DIR/c4-validation-91205-samples.en_text_document.bin   .idx

(one folder level below ``DIR`` is searched too). **mini**: the reStructuredText sources of Python's manual
(Debian ``python3.11-doc``), one document per file as written, 1 file in 20 held out for evaluation (chosen by a
hash of its path), tokenized with a byte-level BPE trained here on the training files; **tiny**: generated
text. Both are written as the same Megatron ``.bin``/``.idx`` pairs the reference reads, with the tokenizer
files beside them, into the cache (``~/.cache/mlbench/llama31_8b/``), built once.

``info.json`` records the counts and what a unigram model (token frequencies of the training files, add-one
smoothed) scores on the evaluation samples: the baseline the quality target is set against.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np

from mlbench.data import download, indexed_tokens
from mlbench.data.folders import build_once
from mlbench.definition import Benchmark
from mlbench.errors import DataError
from mlbench.llm import tokenizer

FORMAT_VERSION = 1
PYDOC_DIR = Path("/usr/share/doc/python3.11/html/_sources")
INFO = "info.json"
TOKENIZER = "tokenizer"


def _params(bench: Benchmark) -> dict[str, Any]:
    hp = bench.hparams
    return {"version": FORMAT_VERSION, "size": bench.size, "vocab_size": hp["model"]["vocab_size"],
            "seq_len": hp["seq_len"], "eval_samples": hp["eval_samples"]}


def data_root(bench: Benchmark) -> Path:
    digest = hashlib.sha256(json.dumps(_params(bench), sort_keys=True).encode()).hexdigest()[:10]
    return download.cache_dir("llama31_8b", f"{bench.size}-{digest}")


def ensure_data(bench: Benchmark, say=None) -> Path:
    """The folder of this (mini/tiny) size's token files and tokenizer; built when missing."""
    return build_once(data_root(bench), lambda out: build(bench, out), marker=INFO, say=say,
                      what=f"llama31_8b {bench.size} data")


def info(root: Path) -> dict[str, Any]:
    return json.loads((root / INFO).read_text())


# ---------------------------------------------------------------- texts

def pydoc_texts(folder: Path = PYDOC_DIR) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): python3.11-doc's reST sources, one per file, sorted by path."""
    files = sorted(folder.rglob("*.rst.txt")) if folder.is_dir() else []
    if not files:
        raise DataError(f"Python's documentation sources not found in {folder}",
                        "install them with `apt-get install python3.11-doc` (llama31_8b mini trains on them)")
    train, held = [], []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        text = f.read_text(encoding="utf-8", errors="replace")
        (held if int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 20 == 0 else train).append(text)
    return train, held


_WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
          "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def tiny_texts(n_docs: int = 600, seed: int = 1) -> tuple[list[str], list[str]]:
    """Generated documents: runs of words in alphabet order (wrapping) from a random start, one run per line,
    a word skipped now and then: after its first words a line is predictable, so a tiny model learns it fast."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        lines = []
        for _ in range(rng.randint(2, 5)):
            k = rng.randrange(len(_WORDS))
            words = []
            for _ in range(rng.randint(6, 14)):
                words.append(_WORDS[k % len(_WORDS)])
                k += 2 if rng.random() < 0.05 else 1
            lines.append(" ".join(words))
        docs.append("\n".join(lines) + "\n")
    cut = n_docs // 10
    return docs[cut:], docs[:cut]


# ---------------------------------------------------------------- building

def build(bench: Benchmark, out: Path) -> dict[str, Any]:
    """Tokenizer, training and evaluation token files of a mini or tiny size, written into ``out``."""
    hp = bench.hparams
    vocab = hp["model"]["vocab_size"]
    train_texts, eval_texts = tiny_texts() if bench.size == "tiny" else pydoc_texts()
    tokenizer.train(train_texts, vocab, out / TOKENIZER)
    enc = tokenizer.Encoder(out / TOKENIZER)
    if enc.vocab_size > vocab:
        raise DataError(f"the trained tokenizer has {enc.vocab_size} ids, more than the model's {vocab}",
                        "report this: tokenizers trained a larger vocabulary than asked")
    n_train, t_train = indexed_tokens.write(out / hp["train_files"][0], enc.documents(train_texts), vocab)
    n_eval, t_eval = indexed_tokens.write(out / hp["eval_file"], enc.documents(eval_texts), vocab)
    report = {**_params(bench), "train_documents": n_train, "train_tokens": t_train, "eval_documents": n_eval,
              "eval_tokens": t_eval,
              "unigram_log_perplexity": unigram_log_perplexity(out / hp["train_files"][0], out / hp["eval_file"],
                                                               vocab, hp["seq_len"], hp["eval_samples"])}
    (out / INFO).write_text(json.dumps(report, indent=1) + "\n")
    return report


def unigram_log_perplexity(train_prefix: Path, eval_prefix: Path, vocab: int, seq_len: int, samples: int) -> float:
    """Cross-entropy (nats per token) of add-one-smoothed training token frequencies on the predicted tokens of
    the first ``samples`` evaluation windows: what a model that ignores context scores."""
    counts = np.bincount(indexed_tokens.IndexedTokens(train_prefix).tokens, minlength=vocab).astype(np.float64) + 1
    logp = np.log(counts / counts.sum())
    ev = indexed_tokens.IndexedTokens(eval_prefix).tokens
    n = min(samples, (len(ev) - 1) // seq_len)
    labels = np.concatenate([ev[i * seq_len + 1:(i + 1) * seq_len + 1] for i in range(n)])
    return float(-logp[labels].mean()) if len(labels) else math.nan


# ---------------------------------------------------------------- the reference folder

def find_prefix(root: Path, name: str) -> Path | None:
    """``root/name`` or ``root/*/name`` when its ``.idx`` exists there."""
    for cand in [root / name, *sorted(p / name for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        if cand.with_name(cand.name + ".idx").is_file() or cand.with_name(cand.name + ".bin").is_file():
            return cand
    return None


def reference_prefixes(bench: Benchmark, root: Path) -> tuple[list[Path], Path]:
    """The training and evaluation file prefixes in a reference folder; one DataError listing what is missing."""
    hp = bench.hparams
    if not root.is_dir():
        raise DataError(f"data folder {root} not found", _reference_fix())
    train = [find_prefix(root, n) for n in hp["train_files"]]
    ev = find_prefix(root, hp["eval_file"])
    missing = [n for n, p in zip(hp["train_files"], train) if p is None] + ([hp["eval_file"]] if ev is None else [])
    if missing:
        raise DataError(f"{root} lacks the llama31_8b data: " + ", ".join(f"{m}.bin/.idx" for m in missing),
                        _reference_fix())
    return [p for p in train if p is not None], ev  # type: ignore[return-value]


def _reference_fix() -> str:
    return ("pass --data-dir DIR holding the reference's preprocessed C4 files (c4-train.en_6_text_document.bin/.idx "
            "and c4-validation-91205-samples.en_text_document.bin/.idx: the MLCommons download "
            "llama3_1_8b_preprocessed_c4_dataset, or the reference's utils/preprocess.sh)")
