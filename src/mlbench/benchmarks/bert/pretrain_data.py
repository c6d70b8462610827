"""Pre-training data for BERT mini and tiny, built offline in the MLPerf reference's HDF5 format.

**mini**: English prose from Debian's ``python3.11-doc`` (the reStructuredText sources of Python's manual under
``/usr/share/doc/python3.11/html/_sources``), markup removed roughly (directives, literal and code blocks,
tables and headings dropped; roles and inline markup reduced to their text), split into sentences; one source
file is one document. A WordPiece vocabulary (``hparams['model']['vocab_size']``, lower-cased) is trained here
with ``tokenizers``. **tiny**: documents of sentences generated from a small grammar (a word-level vocabulary,
no Debian data, seconds to build).

Examples are made as the reference's ``create_pretraining_data.py`` makes them: documents are cut into chunks
of sentences up to ``seq_len - 3`` tokens (10% shorter at random); segment A is the first part of a chunk,
segment B the rest or, half the time, text from a random other document (``next_sentence_labels`` 1); the pair
is truncated at random ends; 15% of the tokens (at most ``max_predictions``) are masked, 80% as ``[MASK]``,
10% kept, 10% a random word; every document is used ``dupe_factor`` times with different masks. One document
in ten is held out for the evaluation set (``hparams['eval_samples']`` examples, picked at random from a
10-fold duplication as the reference's ``pick_eval_samples.py`` does).

Layout (the loader reads it like the reference's folders)::

    <root>/vocab.txt
    <root>/hdf5/training/part-00000-of-0000N.hdf5 ...   # train shards
    <root>/hdf5/eval/part_eval.hdf5                      # the evaluation set
    <root>/manifest.json                                 # counts and the parameters they were built with

Built once per parameter set into ``mlbench.data.download.cache_dir('bert', ...)`` (or the ``--root`` of
``mlbench data prepare bert``: a new or empty folder, never one holding other files): in a hidden folder inside
it, moved into place when complete, ``manifest.json`` last; deterministic (fixed seeds, sorted inputs).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlbench.benchmarks.bert import shards
from mlbench.data import download, folders
from mlbench.definition import Benchmark
from mlbench.errors import DataError
from mlbench.untrusted import load_json

FORMAT_VERSION = 1
PYDOC_DIR = Path("/usr/share/doc/python3.11/html/_sources")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)

# The reference's folders, newest first: (training shards, evaluation set).
REFERENCE_TRAIN_DIRS = ("hdf5/training-4320/hdf5_4320_shards_varlength",
                        "hdf5/training-4320/hdf5_4320_shards_uncompressed", "hdf5/training")
REFERENCE_EVAL_DIRS = ("hdf5/eval_varlength", "hdf5/eval")
PHASE1_CHECKPOINT = "phase1/model.ckpt-28252.pt"


# ---------------------------------------------------------------- text

_CODE_DIRECTIVES = {"code-block", "sourcecode", "testcode", "testoutput", "testsetup", "testcleanup", "doctest",
                    "productionlist", "literalinclude", "highlight", "toctree", "raw", "code", "index",
                    "csv-table", "list-table", "table", "image", "figure", "only", "include", "moduleauthor",
                    "sectionauthor", "audit-event-table", "opcode", "cmdoption", "option", "describe", "envvar",
                    "program", "c:function", "c:macro", "c:type", "c:member", "c:var", "pdbcommand", "maths"}
_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
_LINK = re.compile(r"`([^`<]*?)\s*<[^>]*>`_{1,2}")
_LITERAL = re.compile(r"``([^`]*)``")
_INTERP = re.compile(r"`([^`]*)`_{0,2}")
_EMPH = re.compile(r"\*{1,2}([^*\s][^*]*?)\*{1,2}")
_SUBST = re.compile(r"\|[^|\s][^|]*\|_{0,2}")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_HEADING = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def _inline(text: str) -> str:
    text = _ROLE.sub(lambda m: re.sub(r"\s*<[^>]*>$", "", m.group(1)).lstrip("~!"), text)
    text = _LINK.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _INTERP.sub(r"\1", text)
    text = _EMPH.sub(r"\1", text)
    text = _SUBST.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


def rst_paragraphs(source: str) -> list[str]:
    """Prose paragraphs of one reStructuredText file (markup removed roughly)."""
    paragraphs: list[str] = []
    current: list[str] = []
    skip_indent: int | None = None  # skipping a literal/code block indented deeper than this

    def flush() -> None:
        if current:
            paragraphs.append(_inline(" ".join(current)))
            current.clear()

    for raw in source.splitlines():
        line = raw.rstrip()
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            flush()
            continue
        if stripped.startswith(".."):
            flush()
            m = re.match(r"\.\.\s+([\w:-]+)::", stripped)
            if m is None or m.group(1) in _CODE_DIRECTIVES or not m:
                skip_indent = indent  # a comment, target or code directive: drop its block
            continue
        if _HEADING.match(stripped) or stripped.startswith(("+-", "+=", "|", ">>>", "...", "$ ", "%")) or \
                re.match(r"^:[\w -]+:(\s|$)", stripped):
            flush()
            current.clear()
            continue
        if stripped.endswith("::"):
            text = stripped[:-2].rstrip()
            if text:
                current.append(text + ("." if not text.endswith((".", ":")) else ""))
            flush()
            skip_indent = indent
            continue
        current.append(stripped)
    flush()
    return paragraphs


def sentences_of(paragraphs: list[str]) -> list[str]:
    out = []
    for para in paragraphs:
        for s in _SENT.split(para):
            s = s.strip()
            words = s.split()
            if len(words) < 4:
                continue
            letters = sum(c.isalpha() for c in s)
            if letters < 0.6 * len(s):  # code, numbers, tables
                continue
            out.append(s)
    return out


def pydoc_documents(folder: Path | None = None) -> list[list[str]]:
    """Documents (lists of sentences) from python3.11-doc's reStructuredText sources, sorted by path."""
    folder = Path(folder) if folder is not None else PYDOC_DIR
    files = sorted(folder.rglob("*.rst.txt")) if folder.is_dir() else []
    if not files:
        raise DataError(f"Python's documentation sources not found in {folder}",
                        "install them with `apt-get install python3.11-doc` (BERT mini trains on that prose)")
    docs = []
    for path in files:
        sents = sentences_of(rst_paragraphs(path.read_text(encoding="utf-8", errors="replace")))
        if len(sents) >= 2:
            docs.append(sents)
    return docs


# ---------------------------------------------------------------- the tiny grammar

_TINY_WORDS = {
    "name": "alice bob carol dave erin frank grace heidi ivan judy".split(),
    "animal": "cat dog bird fish horse cow sheep goat mouse fox".split(),
    "color": "red blue green black white brown gray yellow".split(),
    "thing": "ball box cup hat book lamp chair door bed car".split(),
    "place": "park house garden river field town school market".split(),
    "verb": "sees finds takes likes wants holds moves opens".split(),
    "adverb": "slowly quickly often never always".split(),
}


def tiny_documents(n_docs: int, seed: int) -> list[list[str]]:
    """Short stories: each about one name and one animal, in a few fixed sentence patterns."""
    rng = random.Random(seed)
    w = _TINY_WORDS
    docs = []
    for _ in range(n_docs):
        name, animal, place = rng.choice(w["name"]), rng.choice(w["animal"]), rng.choice(w["place"])
        sents = []
        for _ in range(rng.randint(4, 8)):
            color, thing = rng.choice(w["color"]), rng.choice(w["thing"])
            pattern = rng.randrange(4)
            if pattern == 0:
                s = f"{name} {rng.choice(w['verb'])} the {color} {thing} ."
            elif pattern == 1:
                s = f"the {animal} {rng.choice(w['adverb'])} goes to the {place} ."
            elif pattern == 2:
                s = f"in the {place} , {name} and the {animal} {rng.choice(w['verb'])} a {thing} ."
            else:
                s = f"the {thing} of {name} is {color} ."
            sents.append(s)
        docs.append(sents)
    return docs


def tiny_vocab(vocab_size: int) -> list[str]:
    words = sorted({x for ws in _TINY_WORDS.values() for x in ws} | {"the", "a", "goes", "to", "in", "and",
                                                                      "of", "is", ".", ","})
    vocab = SPECIALS + words
    if len(vocab) > vocab_size:
        raise DataError(f"the tiny grammar needs {len(vocab)} words but vocab_size is {vocab_size}",
                        "raise hparams['model']['vocab_size']")
    return vocab


# ---------------------------------------------------------------- examples, as create_pretraining_data.py

def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _mask(tokens: list[int], max_predictions: int, vocab_ids: range, rng: random.Random
          ) -> tuple[list[int], list[int], list[int]]:
    cand = [i for i, t in enumerate(tokens) if t not in (CLS, SEP)]
    rng.shuffle(cand)
    n = min(max_predictions, max(1, int(round(len(tokens) * 0.15))))
    out = list(tokens)
    picked = sorted(cand[:n])
    labels = []
    for i in picked:
        if rng.random() < 0.8:
            out[i] = MASK
        elif rng.random() >= 0.5:
            out[i] = rng.choice(vocab_ids)
        labels.append(tokens[i])
    return out, picked, labels


def create_examples(docs: list[list[list[int]]], seq_len: int, max_predictions: int, dupe_factor: int,
                    vocab_size: int, seed: int, short_seq_prob: float = 0.1) -> dict[str, np.ndarray]:
    """Pre-training examples from tokenised documents (lists of sentences of token ids), shuffled."""
    rng = random.Random(seed)
    vocab_ids = range(len(SPECIALS), vocab_size)
    max_tokens = seq_len - 3
    examples = []
    for _ in range(dupe_factor):
        for d, doc in enumerate(docs):
            target = max_tokens if rng.random() >= short_seq_prob else rng.randint(2, max_tokens)
            chunk: list[list[int]] = []
            length = 0
            i = 0
            while i < len(doc):
                chunk.append(doc[i])
                length += len(doc[i])
                if i == len(doc) - 1 or length >= target:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    a = [t for s in chunk[:a_end] for t in s]
                    b: list[int] = []
                    if len(chunk) == 1 or rng.random() < 0.5:
                        random_next = 1
                        other = d
                        for _ in range(10):
                            other = rng.randint(0, len(docs) - 1)
                            if other != d:
                                break
                        odoc = docs[other]
                        for j in range(rng.randint(0, len(odoc) - 1), len(odoc)):
                            b.extend(odoc[j])
                            if len(b) >= target - len(a):
                                break
                        i -= len(chunk) - a_end  # the unused sentences start the next chunk
                    else:
                        random_next = 0
                        b = [t for s in chunk[a_end:] for t in s]
                    _truncate_pair(a, b, max_tokens, rng)
                    if a and b:
                        tokens = [CLS, *a, SEP, *b, SEP]
                        segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
                        masked, positions, labels = _mask(tokens, max_predictions, vocab_ids, rng)
                        examples.append((masked, segments, positions, labels, random_next))
                    chunk, length = [], 0
                i += 1
    rng.shuffle(examples)
    return _to_arrays(examples, seq_len, max_predictions)


def _to_arrays(examples: list, seq_len: int, max_predictions: int) -> dict[str, np.ndarray]:
    n = len(examples)
    ids = np.zeros((n, seq_len), np.int32)  # any integer dtype is read; these are compact
    mask = np.zeros((n, seq_len), np.int8)
    seg = np.zeros((n, seq_len), np.int8)
    pos = np.zeros((n, max_predictions), np.int16)
    lab = np.zeros((n, max_predictions), np.int32)
    nsp = np.zeros((n,), np.int8)
    for k, (tokens, segments, positions, labels, random_next) in enumerate(examples):
        ids[k, :len(tokens)] = tokens
        mask[k, :len(tokens)] = 1
        seg[k, :len(segments)] = segments
        pos[k, :len(positions)] = positions
        lab[k, :len(labels)] = labels
        nsp[k] = random_next
    return {"input_ids": ids, "input_mask": mask, "segment_ids": seg, "masked_lm_positions": pos,
            "masked_lm_ids": lab, "next_sentence_labels": nsp}


# ---------------------------------------------------------------- building and caching

def _params(bench: Benchmark) -> dict[str, Any]:
    hp = bench.hparams
    return {"version": FORMAT_VERSION, "size": bench.size, "seq_len": hp["seq_len"],
            "max_predictions": hp["max_predictions"], "vocab_size": hp["model"]["vocab_size"],
            "eval_samples": hp["eval_samples"], "dupe_factor": hp.get("dupe_factor", 5),
            "train_shards": hp.get("train_shards", 4), "tiny_documents": hp.get("tiny_documents", 400)}


def data_root(bench: Benchmark) -> Path:
    """The cache folder of this size's generated data (named by a hash of the parameters it is built with)."""
    digest = hashlib.sha256(json.dumps(_params(bench), sort_keys=True).encode()).hexdigest()[:10]
    return download.cache_dir("bert", f"{bench.size}-{digest}")


def is_complete(root: Path) -> bool:
    return (root / "manifest.json").is_file()


def ensure_data(bench: Benchmark, root: str | Path | None = None, say=None) -> Path:
    """The folder holding this size's generated shards; built when missing, into the cache or into ``root``
    (a new or empty folder, or one mlbench made: see :mod:`mlbench.data.folders`; a folder holding other
    files is refused and left as it is). The build goes to a hidden folder inside it and moves into place,
    ``manifest.json`` last: a folder with a manifest is complete."""
    if bench.is_reference:
        raise DataError("BERT reference data cannot be generated", "pass --data-dir with the MLPerf shards")
    root = Path(root) if root is not None else data_root(bench)
    if is_complete(root):
        return root
    with folders.writing(root, f"the BERT {bench.size} data", say=say):
        if is_complete(root):  # another process built it while this one waited
            return root
        for stale in root.glob(".building-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            t0 = time.perf_counter()
            build(bench, tmp)
            folders.move_into(tmp, root, last=("manifest.json",))
            if say:
                say(f"built BERT {bench.size} data in {time.perf_counter() - t0:.1f} s: {root}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def build(bench: Benchmark, out: Path) -> dict[str, Any]:
    """Build the vocabulary, the train shards and the eval shard of a mini or tiny size into ``out``."""
    p = _params(bench)
    seq_len, max_pred, vocab_size = p["seq_len"], p["max_predictions"], p["vocab_size"]
    if bench.size == "tiny":
        vocab = tiny_vocab(vocab_size)
        index = {w: i for i, w in enumerate(vocab)}
        texts = tiny_documents(p["tiny_documents"], seed=1)
        docs = [[[index[w] for w in s.split()] for s in doc] for doc in texts]
    else:
        texts = pydoc_documents()
        vocab, docs = _wordpiece(texts, vocab_size)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    held = [d for k, d in enumerate(docs) if k % 10 == 9]
    train = [d for k, d in enumerate(docs) if k % 10 != 9]
    arrays = create_examples(train, seq_len, max_pred, p["dupe_factor"], len(vocab), seed=12345)
    n = len(arrays["input_ids"])
    bounds = np.linspace(0, n, p["train_shards"] + 1).astype(int)
    for s in range(p["train_shards"]):
        part = {k: v[bounds[s]:bounds[s + 1]] for k, v in arrays.items()}
        shards.write_shard(out / "hdf5" / "training" / f"part-{s:05d}-of-{p['train_shards']:05d}.hdf5", part)
    ev = create_examples(held, seq_len, max_pred, 10, len(vocab), seed=54321)
    if len(ev["input_ids"]) < p["eval_samples"]:
        raise DataError(f"only {len(ev['input_ids'])} evaluation examples for {p['eval_samples']} wanted",
                        "lower hparams['eval_samples'] or add text")
    pick = np.sort(np.random.default_rng(7).choice(len(ev["input_ids"]), p["eval_samples"], replace=False))
    shards.write_shard(out / "hdf5" / "eval" / "part_eval.hdf5", {k: v[pick] for k, v in ev.items()})
    manifest = {**p, "train_samples": n, "vocab_entries": len(vocab), "documents": len(docs)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _wordpiece(texts: list[list[str]], vocab_size: int) -> tuple[list[str], list[list[list[int]]]]:
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    flat = [s for doc in texts for s in doc]
    tok.train_from_iterator(flat, vocab_size=vocab_size, min_frequency=2, limit_alphabet=200,
                            special_tokens=SPECIALS, show_progress=False)
    vocab_map = tok.get_vocab()
    vocab = [w for w, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
    if vocab[:len(SPECIALS)] != SPECIALS:
        raise DataError("the trained WordPiece vocabulary does not start with the special tokens",
                        "report this: tokenizers changed its special-token order")
    encoded = tok.encode_batch(flat, add_special_tokens=False)
    docs, k = [], 0
    for doc in texts:
        sents = [e.ids for e in encoded[k:k + len(doc)] if e.ids]
        k += len(doc)
        docs.append(sents)
    return vocab, docs


# ---------------------------------------------------------------- prepare (mlbench data prepare bert)

def find_reference_dirs(root: Path) -> tuple[Path | None, Path | None]:
    train = next((root / d for d in REFERENCE_TRAIN_DIRS if (root / d).is_dir()), None)
    ev = next((root / d for d in REFERENCE_EVAL_DIRS if (root / d).is_dir()), None)
    return train, ev


def check_reference(bench: Benchmark, root: str | Path) -> dict[str, Any]:
    """Check a folder of real MLPerf shards (format and counts); a DataError lists everything missing."""
    root = Path(root)
    hp = bench.hparams
    problems: list[str] = []
    train_dir, eval_dir = find_reference_dirs(root)
    report: dict[str, Any] = {"root": str(root)}
    if train_dir is None:
        problems.append("training shards: none of " + ", ".join(f"{root}/{d}" for d in REFERENCE_TRAIN_DIRS))
    else:
        infos = shards.open_folder(train_dir, hp["seq_len"], hp["max_predictions"], "training", hp["model"]["vocab_size"])
        report.update(train_dir=str(train_dir), train_shards=len(infos), train_samples=sum(i.samples for i in infos))
    if eval_dir is None:
        problems.append("evaluation set: none of " + ", ".join(f"{root}/{d}" for d in REFERENCE_EVAL_DIRS))
    else:
        infos = shards.open_folder(eval_dir, hp["seq_len"], hp["max_predictions"], "evaluation", hp["model"]["vocab_size"])
        n = sum(i.samples for i in infos)
        report.update(eval_dir=str(eval_dir), eval_samples=n)
        if n != hp["eval_samples"]:
            problems.append(f"evaluation set: {n} samples in {eval_dir}, the rules ask for {hp['eval_samples']} "
                            "(pick_eval_samples.py --num_examples_to_pick=10000)")
    ckpt = root / PHASE1_CHECKPOINT
    report["init_checkpoint"] = str(ckpt) if ckpt.is_file() else None
    if not ckpt.is_file():
        problems.append(f"phase-1 checkpoint: {ckpt} (converted with the reference's convert_tf_checkpoint.py)")
    if problems:
        raise DataError(f"BERT reference data in {root} is incomplete; missing or wrong:\n  - "
                        + "\n  - ".join(problems),
                        "lay it out as the MLPerf reference does: hdf5/training-4320/hdf5_4320_shards_varlength/ "
                        "(or _uncompressed), hdf5/eval_varlength/ (or hdf5/eval/) and phase1/model.ckpt-28252.pt")
    return report


def prepare(bench: Benchmark, root: str | Path | None = None, say=print) -> dict[str, Any]:
    """``mlbench data prepare bert``: build mini/tiny data (into ``root`` or the cache), or check reference data."""
    if bench.is_reference:
        if root is None:
            raise DataError("BERT reference data cannot be downloaded here",
                            "pass --root DIR holding the MLPerf shards, eval set and phase-1 checkpoint to check it")
        report = check_reference(bench, root)
        say(f"BERT reference data in {root}: {report['train_shards']} training shards "
            f"({report['train_samples']} samples), {report['eval_samples']} evaluation samples, "
            f"checkpoint {report['init_checkpoint']}")
        return report
    folder = ensure_data(bench, root, say=say)
    manifest = load_json(folder / "manifest.json", "BERT data manifest", expect=dict,
                         hint=f"{folder} is not BERT data mlbench generated: name a new or empty folder")
    if not all(isinstance(manifest.get(k), int) for k in ("train_samples", "eval_samples", "vocab_entries")):
        raise DataError(f"{folder / 'manifest.json'} is not the manifest of BERT data mlbench generated (it lacks "
                        "the sample counts)", "name a new or empty folder for the data")
    say(f"BERT {bench.size} data in {folder}: {manifest['train_samples']} training and "
        f"{manifest['eval_samples']} evaluation examples, {manifest['vocab_entries']}-entry vocabulary")
    return {"root": str(folder), **manifest}
