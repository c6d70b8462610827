"""Helpers for the BERT SQuAD tests: small SQuAD v1.1 files in the real format and a vocab.txt built from
their words (every word whole, plus single characters so that unknown words still tokenise)."""

from __future__ import annotations

import json
import string
from pathlib import Path

from mlbench.benchmarks.bert import squad

LONG_CONTEXT = " ".join(f"Sentence {i} tells that the {c} river flows north." for i, c in
                        enumerate(["red", "blue", "green", "grey", "white", "black", "brown", "pink"]))


def small_squad() -> dict:
    """Two articles: short paragraphs (one feature each) and one long paragraph (several features)."""
    short = "Steve Smith's team won the cup in 1895. The cat, a tabby, sat on the old mat."
    qas_short = [
        {"id": "q-smith", "question": "Whose team won the cup?",
         "answers": [{"text": "Steve Smith", "answer_start": 0}]},
        {"id": "q-year", "question": "When did the team win?",
         "answers": [{"text": "1895", "answer_start": short.index("1895")},
                     {"text": "in 1895", "answer_start": short.index("in 1895")}]},
        {"id": "q-cat", "question": "Where did the cat sit?",
         "answers": [{"text": "on the old mat", "answer_start": short.index("on the old mat")}]},
    ]
    target = "the white river flows north"
    qas_long = [{"id": "q-white", "question": "Which sentence tells about the white river?",
                 "answers": [{"text": target, "answer_start": LONG_CONTEXT.index(target)}]},
                {"id": "q-red", "question": "What flows north in sentence 0?",
                 "answers": [{"text": "the red river", "answer_start": LONG_CONTEXT.index("the red river")}]}]
    return {"version": "1.1", "data": [
        {"title": "Short", "paragraphs": [{"context": short, "qas": qas_short}]},
        {"title": "Long", "paragraphs": [{"context": LONG_CONTEXT, "qas": qas_long}]},
    ]}


def write_vocab(doc: dict, path: Path) -> Path:
    words: set[str] = set()
    for article in doc["data"]:
        for para in article["paragraphs"]:
            words.update(squad._basic_tokens(para["context"], True))
            for qa in para["qas"]:
                words.update(squad._basic_tokens(qa["question"], True))
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*squad.SPECIAL_TOKENS, *sorted(words), *(c for c in chars if c not in words),
              *(f"##{c}" for c in chars)]
    path.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return path


def write_squad_dir(root: Path, doc: dict | None = None) -> Path:
    """``root`` holding dev-v1.1.json and vocab.txt (the reference size's --data-dir layout)."""
    doc = doc or small_squad()
    root.mkdir(parents=True, exist_ok=True)
    (root / "dev-v1.1.json").write_text(json.dumps(doc), encoding="utf-8")
    write_vocab(doc, root / "vocab.txt")
    return root
