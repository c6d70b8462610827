"""Question-answering data for BERT mini and tiny, in the SQuAD v1.1 JSON format, built offline.

**mini** (WordNet 3.x, Debian ``wordnet-base``: ``/usr/share/wordnet/data.noun``): every noun synset whose
first lemma is a plain lower-case word or phrase (letters, at most 3 words; the first sense in file order
of each headword only) and whose definition (the gloss up to its
first ``;``) has 3 to 20 words and does not contain the lemma is an *entry*. Entries go to dev when the
SHA-1 of the lemma falls in 1/16 of the hash space (a split by headword: no dev headword is ever asked in
train), else to train. Within a split, runs of 3 to 5 neighbouring entries (WordNet's file order keeps related
senses together, so neighbours are plausible distractors) form one context; each entry is written with one of
five templates (seeded)::

    X is D.   |   X: D.   |   The word X means D.   |   X, also called Y, is D.   |   D (capitalised) is called X.

and, for the first four, the gloss's first example sentence follows (``For example, "...".``), a sentence
that mentions X without defining it. Every entry gets one question, ``What is X?``, ``What does X mean?``,
``What is meant by X?`` or ``What is the meaning of X?`` (about the synonym Y for half of the ``also called``
entries), answered by the span D. Dev keeps the first 2,000 questions, train the first 24,000.

**tiny** (generated here, no Debian data): contexts of 2 or 3 entries, ``X is D.`` or ``D is called X.``
with D = ``a <adjective> <noun> that <verb>s <noun>``, over a 24-word headword list and small word lists, definitions drawn afresh for every
context so that only reading the context answers the question; 1,024 train and 64 dev questions.

Both are deterministic (fixed seeds), cached under ``cache_dir("data", "bert-qa", "<size>-v2")`` with a
WordPiece ``vocab.txt`` trained on the train split (``tokenizers``), and come with the F1 of a lexical
baseline on the dev split (:func:`lexical_baseline`) and of question-blind answers (:func:`trivial_answers`: the
whole context, its first sentence, ...), so that a model's F1 can be read against both.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from mlbench.benchmarks.bert import squad
from mlbench.data import download, folders
from mlbench.errors import DataError

VERSION = "v2"  # v2: baseline.json carries the trivial answers' scores too
WORDNET_DIRS = ("/usr/share/wordnet",)
WORDNET_HINT = ("install Debian's wordnet-base (apt-get install wordnet-base), which puts data.noun under "
                "/usr/share/wordnet, or pass --data-dir DIR holding data.noun")
MINI_DEV_QUESTIONS, MINI_TRAIN_QUESTIONS = 2_000, 24_000
TINY_DEV_QUESTIONS, TINY_TRAIN_QUESTIONS = 64, 1_024


# ---------------------------------------------------------------------------------------------- files
def dataset_dir(size: str, data_dir: str | None = None) -> Path:
    """The cached QA data of ``size`` (train-v1.1.json, dev-v1.1.json, vocab.txt, baseline.json), built when
    missing."""
    dest = download.cache_dir("data", "bert-qa", f"{size}-{VERSION}")
    if (dest / "baseline.json").is_file():
        return dest
    if size == "mini":
        train, dev = mini_squad(wordnet_file(data_dir))
        vocab_size = 4096
    elif size == "tiny":
        train, dev = tiny_squad()
        vocab_size = 256
    else:
        raise ValueError(f"no built-in QA data for size {size!r}")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_squad(train, tmp / "train-v1.1.json")
    write_squad(dev, tmp / "dev-v1.1.json")
    build_vocab(squad_texts(train), tmp / "vocab.txt", vocab_size=vocab_size)
    examples = squad.parse_squad(dev, source=str(dest / "dev-v1.1.json"))
    (tmp / "baseline.json").write_text(json.dumps(baseline_scores(dev, examples), indent=1))
    folders.replace_dir(tmp, dest)  # an older set of mlbench's; never a folder it did not make
    return dest


def baseline(size: str, data_dir: str | None = None) -> dict:
    """The lexical baseline's exact match and F1 (percent) on the dev split of ``size``, with ``trivial``: the
    scores of every question-blind answer of :func:`trivial_answers` (name -> exact_match, f1)."""
    return json.loads((dataset_dir(size, data_dir) / "baseline.json").read_text())


def baseline_scores(dev: dict, examples: list[squad.Example] | None = None) -> dict:
    """What ``baseline.json`` holds: the lexical baseline's scores on ``dev`` and every trivial answer's."""
    examples = examples if examples is not None else squad.parse_squad(dev, source="dev")
    trivial = {name: squad.evaluate(examples, preds) for name, preds in trivial_answers(dev).items()}
    return {"method": "lexical (see qa_data.lexical_baseline)", **squad.evaluate(examples, lexical_baseline(dev)),
            "trivial": trivial, "best_trivial_f1": max(t["f1"] for t in trivial.values())}


def write_squad(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def squad_texts(obj: dict) -> Iterable[str]:
    for article in obj["data"]:
        for para in article["paragraphs"]:
            yield para["context"]
            for qa in para["qas"]:
                yield qa["question"]


def build_vocab(texts: Iterable[str], path: Path, *, vocab_size: int) -> Path:
    """An uncased WordPiece vocabulary (BERT's special tokens first) trained on ``texts`` with ``tokenizers``."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2, limit_alphabet=200,
                            special_tokens=list(squad.SPECIAL_TOKENS), show_progress=False)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    path.write_text("".join(f"{t}\n" for t, _ in vocab), encoding="utf-8")
    return path


def _document(contexts: list[tuple[str, list[tuple[str, str, int]]]], title: str, prefix: str) -> dict:
    """SQuAD v1.1 JSON from (context, [(question, answer, answer_start)]) pairs."""
    paragraphs = []
    n = 0
    for context, qas in contexts:
        items = []
        for question, answer, start in qas:
            assert context[start:start + len(answer)] == answer, (context, answer, start)
            items.append({"id": f"{prefix}{n:06d}", "question": question,
                          "answers": [{"text": answer, "answer_start": start}]})
            n += 1
        paragraphs.append({"context": context, "qas": items})
    return {"version": "1.1", "data": [{"title": title, "paragraphs": paragraphs}]}


# ---------------------------------------------------------------------------------------------- mini
def wordnet_file(data_dir: str | None = None) -> Path:
    for d in [data_dir] if data_dir else WORDNET_DIRS:
        p = Path(d) / "data.noun"
        if p.is_file():
            return p
    where = data_dir or WORDNET_DIRS[0]
    raise DataError(f"WordNet's data.noun not found in {where} (BERT mini builds its QA data from it)", WORDNET_HINT)


_LEMMA = re.compile(r"^[A-Za-z]+(?:[_-][A-Za-z]+){0,2}$")


def wordnet_entries(path: Path) -> list[tuple[str, str | None, str, str | None]]:
    """(lemma, a synonym or None, definition, first example or None) of every usable noun synset, in file
    order."""
    entries = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}", WORDNET_HINT) from None
    for line in lines:
        if not line or line.startswith(" ") or " | " not in line:
            continue  # the licence header lines start with two spaces
        head, gloss = line.split(" | ", 1)
        fields = head.split()
        try:
            count = int(fields[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]) for i in range(count)]
        except (IndexError, ValueError):
            continue
        lemma = lemmas[0]
        if not _LEMMA.match(lemma) or lemma != lemma.lower():
            continue
        parts = [p.strip() for p in gloss.strip().split(";")]
        definition = parts[0]
        words = definition.split()
        if not 3 <= len(words) <= 20 or '"' in definition or not definition[-1].isalnum():
            continue
        x = lemma.replace("_", " ")
        if re.search(rf"\b{re.escape(x)}\b", definition, re.IGNORECASE):
            continue
        synonym = next((s.replace("_", " ") for s in lemmas[1:] if _LEMMA.match(s) and s == s.lower()
                        and not re.search(rf"\b{re.escape(s.replace('_', ' '))}\b", definition, re.IGNORECASE)),
                       None)
        example = next((p.strip('"').strip() for p in parts[1:] if p.startswith('"') and p.endswith('"')
                        and len(p) > 8), None)
        if x in seen:
            continue  # one sense per headword: a question must have one answer
        seen.add(x)
        entries.append((x, synonym, definition, example))
    if len(entries) < 1000:
        raise DataError(f"{path} yielded only {len(entries)} usable WordNet entries: not WordNet's data.noun?",
                        WORDNET_HINT)
    return entries


QUESTIONS = ("What is {}?", "What does {} mean?", "What is meant by {}?", "What is the meaning of {}?")


def _mini_context(group, rng: random.Random) -> tuple[str, list[tuple[str, str, int]]]:
    text, qas = "", []
    for x, synonym, definition, example in group:
        template = rng.randrange(5)
        if template == 3 and synonym is None:
            template = 0
        asked = x
        if template == 0:
            pre, post = f"{x.capitalize()} is ", "."
        elif template == 1:
            pre, post = f"{x.capitalize()}: ", "."
        elif template == 2:
            pre, post = f"The word {x} means ", "."
        elif template == 3:
            pre, post = f"{x.capitalize()}, also called {synonym}, is ", "."
            asked = synonym if rng.random() < 0.5 else x
        else:
            pre, post = "", f" is called {x}."
        answer = definition[0].upper() + definition[1:] if template == 4 else definition
        if text:
            text += " "
        start = len(text) + len(pre)
        text += pre + answer + post
        if example and template != 4:
            text += f' For example, "{example}".'
        qas.append((rng.choice(QUESTIONS).format(asked), answer, start))
    return text, qas


def mini_squad(wordnet: Path, *, seed: int = 0) -> tuple[dict, dict]:
    """(train, dev) SQuAD v1.1 documents from WordNet's nouns (see the module docstring)."""
    entries = wordnet_entries(wordnet)
    splits: dict[str, list] = {"train": [], "dev": []}
    for e in entries:
        h = int.from_bytes(hashlib.sha1(e[0].encode()).digest()[:4], "big")
        splits["dev" if h % 16 == 0 else "train"].append(e)
    out = {}
    for name, cap, offset in (("train", MINI_TRAIN_QUESTIONS, 0), ("dev", MINI_DEV_QUESTIONS, 1)):
        rng = random.Random(seed * 2 + offset)
        items, contexts, n, i = splits[name], [], 0, 0
        while i < len(items) and n < cap:
            group, used = [], set()
            k = min(rng.randint(3, 5), cap - n)
            while i < len(items) and len(group) < k:
                x, synonym = items[i][0], items[i][1]
                if x in used or (synonym and synonym in used):
                    break  # a term twice in one context would make its question ambiguous
                group.append(items[i])
                used.update(t for t in (x, synonym) if t)
                i += 1
            contexts.append(_mini_context(group, rng))
            n += len(group)
        out[name] = _document(contexts, f"WordNet nouns ({name})", f"wn-{name}-")
    return out["train"], out["dev"]


# ---------------------------------------------------------------------------------------------- tiny
TINY_HEADWORDS = ("cat", "dog", "fish", "bird", "frog", "goat", "lamp", "door", "boat", "tree", "king", "moon",
                  "star", "rock", "ship", "wolf", "bear", "cake", "rain", "fire", "snow", "leaf", "road", "bell")
TINY_ADJECTIVES = ("red", "big", "small", "old", "green", "blue", "happy", "quiet", "fast", "tall", "dark", "soft")
TINY_NOUNS = ("box", "song", "hill", "cup", "book", "wall", "road", "seed", "coat", "ring", "lake", "horn")
TINY_VERBS = ("finds", "eats", "holds", "pushes", "carries", "sings", "sees", "keeps")


def tiny_squad(*, seed: int = 0) -> tuple[dict, dict]:
    """(train, dev) generated SQuAD v1.1 documents (see the module docstring)."""
    out = {}
    for name, cap, offset in (("train", TINY_TRAIN_QUESTIONS, 0), ("dev", TINY_DEV_QUESTIONS, 1)):
        rng = random.Random(seed * 2 + offset + 100)
        contexts, n = [], 0
        while n < cap:
            heads = rng.sample(TINY_HEADWORDS, min(rng.randint(2, 3), cap - n))
            text, qas = "", []
            for x in heads:
                d = (f"a {rng.choice(TINY_ADJECTIVES)} {rng.choice(TINY_NOUNS)} that "
                     f"{rng.choice(TINY_VERBS)} {rng.choice(TINY_NOUNS)}")
                pre, post = (f"{x} is ", ".") if rng.random() < 0.5 else ("", f" is called {x}.")
                if text:
                    text += " "
                qas.append((rng.choice(QUESTIONS[:2]).format(x), d, len(text) + len(pre)))
                text += f"{pre}{d}{post}"
            contexts.append((text, qas))
            n += len(heads)
        out[name] = _document(contexts, f"generated ({name})", f"tiny-{name}-")
    return out["train"], out["dev"]


# ---------------------------------------------------------------------------------------------- baselines
def _first_sentence(words: list[str]) -> list[str]:
    out = []
    for w in words:
        out.append(w)
        if w.endswith((".", '."', "?", "!")):
            break
    return out


def trivial_answers(doc: dict) -> dict[str, dict[str, str]]:
    """Question-blind answers (name -> predictions): what a model must beat to show that it reads the question.

    Every question of a context gets the same answer: the whole context; its first sentence; that sentence less
    its first two words (``X is`` of ``X is D.``); that sentence from the word after its first link word (is,
    means, called, ...) on; the context's first 8 words.
    """
    out: dict[str, dict[str, str]] = {name: {} for name in TRIVIAL}
    for article in doc["data"]:
        for para in article["paragraphs"]:
            words = para["context"].split()
            first = _first_sentence(words)
            link = next((i for i, w in enumerate(first) if w in _LINK or _norm_word(w) in _LINK), None)
            after_link = first[link + 1:] if link is not None and link + 1 < len(first) else first
            answers = {"whole context": words, "first sentence": first, "first sentence less 2 words": first[2:],
                       "first sentence after its first link word": after_link, "first 8 words": words[:8]}
            for qa in para["qas"]:
                for name in TRIVIAL:
                    out[name][qa["id"]] = " ".join(answers[name])
    return out


TRIVIAL = ("whole context", "first sentence", "first sentence less 2 words", "first sentence after its first link word",
           "first 8 words")


_STOP = frozenset("what is does mean meant by the meaning of a an to it".split())
_LINK = frozenset("is means mean called : , -".split())


def _norm_word(w: str) -> str:
    return re.sub(r"[^a-z0-9]", "", w.lower())


def lexical_baseline(doc: dict) -> dict[str, str]:
    """Predictions of a word-overlap reader: slide a window of the question's content words over the context,
    take the best-overlapping window (the first on ties), and answer with the words after it up to the end of
    that sentence, less leading link words (is, means, called, ...)."""
    predictions = {}
    for article in doc["data"]:
        for para in article["paragraphs"]:
            words = para["context"].split()
            norm = [_norm_word(w) for w in words]
            for qa in para["qas"]:
                q = [w for w in (_norm_word(t) for t in qa["question"].split()) if w and w not in _STOP]
                width = max(1, len(q))
                best, best_at = -1, 0
                for i in range(len(words)):
                    score = len(set(norm[i:i + width]) & set(q))
                    if score > best:
                        best, best_at = score, i
                j = best_at + width
                while j < len(words) and (words[j] in _LINK or _norm_word(words[j]) in _LINK):
                    j += 1
                predictions[qa["id"]] = " ".join(_first_sentence(words[j:]))
    return predictions
