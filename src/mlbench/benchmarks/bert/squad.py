"""SQuAD v1.1 for BERT inference: reading and checking the JSON, features, answer decoding, EM and F1.

This follows the MLPerf Inference bert reference (``language/bert``: ``create_squad_data.py`` and
``accuracy-squad.py``, themselves Google's ``run_squad.py``) in behaviour; the code is mlbench's own.

* **Examples**: each paragraph's context is split on whitespace (space, tab, CR, LF, U+202F) into "original
  words"; an answer's character offset becomes a word span.
* **Features**: the question is WordPiece-tokenised (uncased, ``tokenizers``' BertWordPieceTokenizer over the
  reference ``vocab.txt``) and cut to ``max_query_length`` tokens; every original word is tokenised on its own.
  The document tokens are cut into spans of at most ``max_seq_length - query - 3`` tokens, each span starting
  ``min(span length, doc_stride)`` tokens after the previous one; a feature is ``[CLS] query [SEP] span
  [SEP]``, zero-padded, with ``token_type_ids`` 0 for the query part and 1 for the span part. Each span token
  keeps the index of its original word and whether this span is its "max context" span (the span in which
  ``min(left, right context) + 0.01 * span length`` is largest). 384/64/128 on dev-v1.1 give 10,833 features.
* **Decoding**: for each question, over all its features, the ``n_best`` (20) highest start and end logits
  form candidate spans; a candidate must lie in the document part, start at a max-context token, not end
  before it starts and be at most ``max_answer_length`` (30) tokens long. Candidates are ranked by start +
  end logit; the best one's WordPiece text is aligned back onto the original words' characters
  (:func:`final_text`), so that the answer is a piece of the context, not a normalised token string.
* **Scoring**: the official ``evaluate-v1.1.py`` semantics: answers are normalised (lower case, punctuation
  removed, the articles a/an/the removed, whitespace collapsed); exact match and token F1 are each the maximum
  over the ground truths; both are reported in percent (the reference's F1 is 90.874).

Nothing here needs torch.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlbench.errors import DataError
from mlbench.untrusted import load_json

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WHITESPACE = frozenset(" \t\r\n\u202f")
SQUAD_HINT = ("a SQuAD v1.1 file is {\"version\": \"1.1\", \"data\": [{\"title\": ..., \"paragraphs\": [{\"context\": "
              "..., \"qas\": [{\"id\": ..., \"question\": ..., \"answers\": [{\"text\": ..., \"answer_start\": "
              "...}]}]}]}]}; get the official dev-v1.1.json again (see the MLPerf inference language/bert README)")


# ---------------------------------------------------------------------------------------------- examples
@dataclass
class Example:
    """One question on its paragraph, the paragraph split into whitespace-separated original words."""

    qid: str
    question: str
    doc_tokens: list[str]  # shared by the questions of one paragraph
    answers: list[str]  # every ground-truth answer text (dev has up to ~5)
    start_word: int = -1  # the first answer as a word span (-1: none)
    end_word: int = -1
    answer_text: str = ""


def split_words(text: str) -> tuple[list[str], list[int]]:
    """Whitespace-split ``text`` as the reference does: (words, word index of every character)."""
    words: list[str] = []
    char_to_word: list[int] = []
    prev_space = True
    for c in text:
        if c in _WHITESPACE:
            prev_space = True
        else:
            if prev_space:
                words.append(c)
            else:
                words[-1] += c
            prev_space = False
        char_to_word.append(len(words) - 1)
    return words, char_to_word


def read_squad(path: str | Path) -> list[Example]:
    """The questions of a SQuAD v1.1 JSON file, checked: DataError naming the file, the question and the fix."""
    p = Path(path)
    obj = load_json(p, "SQuAD file", expect=(dict, list), hint=SQUAD_HINT)  # parse_squad explains a list
    return parse_squad(obj, source=str(p))


def parse_squad(obj: Any, *, source: str = "<squad>") -> list[Example]:
    """Examples of a loaded SQuAD v1.1 document; every structural problem is a DataError naming ``source``."""

    def bad(where: str, what: str, fix: str = SQUAD_HINT) -> DataError:
        return DataError(f"SQuAD file {source}: {where}: {what}", fix)

    if isinstance(obj, list):
        raise bad("top level", "is a JSON list; a SQuAD file is an object whose \"data\" holds the articles")
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise bad("top level", "has no \"data\" list of articles")
    version = obj.get("version")
    if version is not None and str(version) != "1.1":
        raise bad("top level", f"is SQuAD version {version!r}; MLPerf BERT uses SQuAD v1.1",
                  "pass dev-v1.1.json (SQuAD v1.1), not another version")
    examples: list[Example] = []
    seen: set[str] = set()
    for a, article in enumerate(obj["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise bad(f"data[{a}]", "has no \"paragraphs\" list")
        for pi, para in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{pi}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise bad(where, "has no \"context\" string")
            if not isinstance(para.get("qas"), list):
                raise bad(where, "has no \"qas\" list")
            context = para["context"]
            words, char_to_word = split_words(context)
            for qi, qa in enumerate(para["qas"]):
                examples.append(_parse_question(qa, f"{where}.qas[{qi}]", context, words, char_to_word, seen,
                                                bad))
    if not examples:
        raise bad("data", "holds no questions")
    return examples


def _parse_question(qa: Any, where: str, context: str, words: list[str], char_to_word: list[int],
                    seen: set[str], bad) -> Example:
    if not isinstance(qa, dict):
        raise bad(where, "is not an object")
    qid = qa.get("id")
    if not isinstance(qid, str) or not qid:
        raise bad(where, "has no \"id\" string")
    here = f"question {qid!r} ({where})"
    if qid in seen:
        raise bad(here, "repeats an id used by an earlier question", "give every question a unique id")
    seen.add(qid)
    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad(here, "has no \"question\" text")
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers:
        raise bad(here, "has no \"answers\" (SQuAD v1.1 answers every question)")
    texts = []
    for k, ans in enumerate(answers):
        if not isinstance(ans, dict) or not isinstance(ans.get("text"), str) or not ans["text"].strip():
            raise bad(here, f"answer {k} has no \"text\"")
        start = ans.get("answer_start")
        if isinstance(start, bool) or not isinstance(start, int):
            raise bad(here, f"answer {k} has no integer \"answer_start\"")
        text = ans["text"]
        if start < 0 or start + len(text) > len(context):
            raise bad(here, f"answer {k} {text[:60]!r} at {start} lies outside its context ({len(context)} "
                      "characters)", "fix answer_start so that context[answer_start:][:len(text)] is the answer")
        found = context[start:start + len(text)]
        if found != text and found.split() != text.split():
            raise bad(here, f"answer {k} {text[:60]!r} does not match its context at answer_start {start} (the "
                      f"context there reads {found[:60]!r})",
                      "fix answer_start so that context[answer_start:][:len(text)] is the answer")
        texts.append(text)
    first = answers[0]
    s, text = first["answer_start"], first["text"]
    return Example(qid=qid, question=question, doc_tokens=words, answers=texts, start_word=char_to_word[s],
                   end_word=char_to_word[s + len(text) - 1], answer_text=text)


# ---------------------------------------------------------------------------------------------- tokenizer
def load_tokenizer(vocab: str | Path, *, lowercase: bool = True):
    """``tokenizers``' BertWordPieceTokenizer over a ``vocab.txt`` (one token a line), checked."""
    p = Path(vocab)
    hint = "pass the vocab.txt that belongs to the model (MLPerf: the BERT-large uncased vocab.txt, 30,522 lines)"
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"vocabulary file not found: {p}", hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read vocabulary file {p}: {exc}", hint) from None
    if not lines:
        raise DataError(f"vocabulary file {p} is empty", hint)
    missing = [t for t in SPECIAL_TOKENS[:4] if t not in lines]
    if missing:
        raise DataError(f"vocabulary file {p} lacks the special tokens {', '.join(missing)}: not a BERT vocab.txt",
                        hint)
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(str(p), lowercase=lowercase)


def vocab_size(tokenizer) -> int:
    """One more than the largest token id the tokenizer gives: the rows a model's embedding needs. (Not the count
    of distinct tokens: a vocab.txt that repeats a token has ids up to its line count.)"""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    return max(vocab.values()) + 1 if vocab else 0


# ---------------------------------------------------------------------------------------------- features
@dataclass
class Features:
    """Model inputs of every feature (one row each) and what decoding needs to map answers back."""

    input_ids: np.ndarray  # int64 [F, L]
    attention_mask: np.ndarray  # int64 [F, L]
    token_type_ids: np.ndarray  # int64 [F, L]
    example_index: np.ndarray  # int64 [F]: the example (question) each feature belongs to
    token_to_orig: np.ndarray  # int32 [F, L]: original word index of a document token, -1 elsewhere
    max_context: np.ndarray  # bool [F, L]: the token's best span is this feature's
    tokens: list[list[str]] = field(default_factory=list)  # WordPiece strings, unpadded
    start_positions: np.ndarray | None = None  # training targets (0 = [CLS] when the answer is not in the span)
    end_positions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    def inputs(self, rows: Sequence[int] | np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids[rows], "attention_mask": self.attention_mask[rows],
                "token_type_ids": self.token_type_ids[rows]}


def doc_spans(n_tokens: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) of the sliding windows over ``n_tokens`` document tokens."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n_tokens:
        length = min(n_tokens - start, max_tokens)
        spans.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, stride)
    return spans


def max_context_span(spans: Sequence[tuple[int, int]], position: int) -> int:
    """The span in which token ``position`` has the most context on its shorter side (ties: the first)."""
    best, best_score = -1, None
    for k, (start, length) in enumerate(spans):
        end = start + length - 1
        if start <= position <= end:
            score = min(position - start, end - position) + 0.01 * length
            if best_score is None or score > best_score:
                best, best_score = k, score
    return best


def max_context_spans(spans: Sequence[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """:func:`max_context_span` of every token position at once (int array of span indices)."""
    if not spans or n_tokens == 0:
        return np.zeros(n_tokens, dtype=np.int64)
    start = np.array([s for s, _ in spans], dtype=np.float64)[:, None]
    length = np.array([n for _, n in spans], dtype=np.float64)[:, None]
    pos = np.arange(n_tokens, dtype=np.float64)[None, :]
    end = start + length - 1
    score = np.minimum(pos - start, end - pos) + 0.01 * length
    score[(pos < start) | (pos > end)] = -np.inf
    return score.argmax(axis=0)  # the first span among equal scores, as the reference's strict ">"


def _tokenize_words(tokenizer, words: list[str]) -> tuple[list[str], list[int], list[int], list[int]]:
    """WordPiece of each original word on its own (one pre-tokenised call per paragraph): (tokens, ids, word of
    each token, first token of each word; a word that yields no token points at the next word's first)."""
    if not words:
        return [], [], [], []
    enc = tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False)
    tok_to_orig = [int(w) for w in enc.word_ids]
    orig_to_tok = np.searchsorted(np.asarray(tok_to_orig, dtype=np.int64), np.arange(len(words)), side="left")
    return list(enc.tokens), list(enc.ids), tok_to_orig, orig_to_tok.tolist()


def _improve_span(doc_tokens: list[str], start: int, end: int, answer_tokens: list[str]) -> tuple[int, int]:
    """The tightest token sub-span of [start, end] that equals the tokenised answer (e.g. "1895" inside
    "(1895-1943)."); the original span when none does."""
    target = " ".join(answer_tokens)
    for s in range(start, end + 1):
        for e in range(end, s - 1, -1):
            if " ".join(doc_tokens[s:e + 1]) == target:
                return s, e
    return start, end


def convert(examples: Sequence[Example], tokenizer, *, max_seq_length: int, doc_stride: int,
            max_query_length: int, training: bool = False) -> Features:
    """Features of ``examples`` as the reference makes them (see the module docstring)."""
    vocab = tokenizer.get_vocab()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    queries = tokenizer.encode_batch([e.question for e in examples], add_special_tokens=False)
    cache: dict[int, tuple] = {}  # per paragraph (examples of one paragraph share doc_tokens)
    span_cache: dict[tuple[int, int], tuple] = {}
    rows: list[tuple] = []
    for ei, ex in enumerate(examples):
        q = queries[ei]
        q_tokens, q_ids = q.tokens[:max_query_length], q.ids[:max_query_length]
        key = id(ex.doc_tokens)
        if key not in cache:
            cache[key] = _tokenize_words(tokenizer, ex.doc_tokens)
        d_tokens, d_ids, tok_to_orig, orig_to_tok = cache[key]
        max_doc = max_seq_length - len(q_ids) - 3
        if max_doc < 1:
            raise DataError(f"max_seq_length {max_seq_length} leaves no room for the document after a "
                            f"{len(q_ids)}-token question", "raise max_seq_length or lower max_query_length")
        tok_start = tok_end = -1
        if training and ex.start_word >= 0:
            tok_start = orig_to_tok[ex.start_word]
            tok_end = (orig_to_tok[ex.end_word + 1] - 1 if ex.end_word + 1 < len(ex.doc_tokens)
                       else len(d_tokens) - 1)
            answer_tokens = tokenizer.encode(ex.answer_text, add_special_tokens=False).tokens
            tok_start, tok_end = _improve_span(d_tokens, tok_start, tok_end, answer_tokens)
        if (key, max_doc) not in span_cache:
            spans = doc_spans(len(d_tokens), max_doc, doc_stride)
            span_cache[(key, max_doc)] = spans, max_context_spans(spans, len(d_tokens))
        spans, best_span = span_cache[(key, max_doc)]
        offset = len(q_ids) + 2
        for k, (start, length) in enumerate(spans):
            tokens = ["[CLS]", *q_tokens, "[SEP]", *d_tokens[start:start + length], "[SEP]"]
            ids = [cls_id, *q_ids, sep_id, *d_ids[start:start + length], sep_id]
            orig = tok_to_orig[start:start + length]
            maxc = best_span[start:start + length] == k
            sp = ep = 0
            if training and tok_start >= 0 and start <= tok_start and tok_end <= start + length - 1:
                sp, ep = tok_start - start + offset, tok_end - start + offset
            rows.append((ei, tokens, ids, len(q_ids), orig, maxc, sp, ep))
    n, L = len(rows), max_seq_length
    f = Features(input_ids=np.zeros((n, L), np.int64), attention_mask=np.zeros((n, L), np.int64),
                 token_type_ids=np.zeros((n, L), np.int64), example_index=np.zeros(n, np.int64),
                 token_to_orig=np.full((n, L), -1, np.int32), max_context=np.zeros((n, L), bool),
                 start_positions=np.zeros(n, np.int64) if training else None,
                 end_positions=np.zeros(n, np.int64) if training else None)
    for r, (ei, tokens, ids, nq, orig, maxc, sp, ep) in enumerate(rows):
        f.input_ids[r, :len(ids)] = ids
        f.attention_mask[r, :len(ids)] = 1
        f.token_type_ids[r, nq + 2:len(ids)] = 1
        f.example_index[r] = ei
        f.token_to_orig[r, nq + 2:nq + 2 + len(orig)] = orig
        f.max_context[r, nq + 2:nq + 2 + len(maxc)] = maxc
        f.tokens.append(tokens)
        if training:
            f.start_positions[r], f.end_positions[r] = sp, ep
    return f


# ---------------------------------------------------------------------------------------------- decoding
def _basic_tokens(text: str, lowercase: bool) -> list[str]:
    """BERT's basic tokenisation (clean, lower case and strip accents, split punctuation), no WordPiece."""
    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                      lowercase=lowercase)
    return [t for t, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(norm.normalize_str(text))]


def _without_spaces(text: str) -> tuple[str, list[int]]:
    kept = [(i, c) for i, c in enumerate(text) if c != " "]
    return "".join(c for _, c in kept), [i for i, _ in kept]


def final_text(pred_text: str, orig_text: str, *, lowercase: bool = True) -> str:
    """The piece of ``orig_text`` (original words, joined by spaces) that the normalised ``pred_text`` covers.

    ``orig_text`` may carry characters the prediction does not ("Smith's" for the prediction "smith").
    Tokenise ``orig_text`` the basic way, find the prediction in it, and map its first and last characters
    back through a character alignment of the two texts with spaces removed. Whenever that alignment is not
    one to one (accents whose removal changed the length, a prediction not found), return ``orig_text``.
    """
    tok_text = " ".join(_basic_tokens(orig_text, lowercase))
    first = tok_text.find(pred_text)
    if first < 0 or not pred_text:
        return orig_text
    last = first + len(pred_text) - 1
    orig_ns, orig_pos = _without_spaces(orig_text)
    tok_ns, tok_pos = _without_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    ns_of_tok = {pos: k for k, pos in enumerate(tok_pos)}
    if first not in ns_of_tok or last not in ns_of_tok:
        return orig_text
    return orig_text[orig_pos[ns_of_tok[first]]:orig_pos[ns_of_tok[last]] + 1]


def _best(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest values, largest first, ties in index order (a stable sort)."""
    return np.argsort(-values, kind="stable")[:n]


def decode(features: Features, rows: Iterable[int], start_logits: np.ndarray, end_logits: np.ndarray,
           examples: Sequence[Example], *, n_best: int = 20, max_answer_length: int = 30,
           lowercase: bool = True) -> dict[str, str]:
    """Predicted answer text per question id from the logits of feature ``rows`` (row k of the logits is
    feature ``rows[k]``); questions none of whose features are among ``rows`` get no prediction."""
    rows = np.asarray(list(rows), dtype=np.int64)
    start_logits = np.asarray(start_logits, dtype=np.float32)
    end_logits = np.asarray(end_logits, dtype=np.float32)
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for k, r in enumerate(rows.tolist()):
        by_example[int(features.example_index[r])].append(k)
    predictions: dict[str, str] = {}
    for ei in sorted(by_example):
        ks = sorted(by_example[ei], key=lambda k: int(rows[k]))  # feature order, as the reference
        prelim: list[tuple[float, int, int, int, float]] = []  # (-score, order, start, end, k)
        for k in ks:
            r = int(rows[k])
            orig, maxc = features.token_to_orig[r], features.max_context[r]
            starts, ends = _best(start_logits[k], n_best), _best(end_logits[k], n_best)
            s, e = np.meshgrid(starts, ends, indexing="ij")
            s, e = s.ravel(), e.ravel()
            ok = (orig[s] >= 0) & (orig[e] >= 0) & maxc[s] & (e >= s) & (e - s + 1 <= max_answer_length)
            for si, ej in zip(s[ok].tolist(), e[ok].tolist(), strict=True):
                score = float(start_logits[k][si]) + float(end_logits[k][ej])
                prelim.append((-score, len(prelim), si, ej, k))
        prelim.sort()
        ex = examples[ei]
        text = "empty"  # the reference's answer when no candidate is valid
        for _, _, si, ej, k in prelim:
            r = int(rows[k])
            pieces = " ".join(features.tokens[r][si:ej + 1]).replace(" ##", "").replace("##", "")
            pred = " ".join(pieces.strip().split())
            words = ex.doc_tokens[features.token_to_orig[r][si]:features.token_to_orig[r][ej] + 1]
            text = final_text(pred, " ".join(words), lowercase=lowercase)
            break  # the best candidate is the prediction (the n-best list only adds probabilities)
        predictions[ex.qid] = text
    return predictions


# ---------------------------------------------------------------------------------------------- scoring
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(c for c in s.lower() if c not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def evaluate(examples: Iterable[Example], predictions: Mapping[str, str], *,
             only_predicted: bool = True) -> dict[str, float]:
    """Exact match and F1 in percent, each the maximum over a question's ground truths.

    ``only_predicted`` scores the questions that have a prediction (a partial accuracy run); otherwise a
    question without one scores 0, as the official script does over the whole file.
    """
    em = f1 = 0.0
    n = 0
    for ex in examples:
        if ex.qid not in predictions:
            if only_predicted:
                continue
            n += 1
            continue
        pred = predictions[ex.qid]
        em += max(exact_match(pred, t) for t in ex.answers)
        f1 += max(f1_score(pred, t) for t in ex.answers)
        n += 1
    return {"exact_match": 100.0 * em / n if n else 0.0, "f1": 100.0 * f1 / n if n else 0.0, "questions": n}
