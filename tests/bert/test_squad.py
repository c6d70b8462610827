"""SQuAD v1.1 reading, features, answer decoding and scoring (mlbench.benchmarks.bert.squad), on small files in
the real format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from bert_support import small_squad, write_squad_dir

from mlbench.benchmarks.bert import qa_data, squad
from mlbench.benchmarks.bert.definition import MINI, MINI_QA_BEST_TRIVIAL_F1, MINI_QA_LEXICAL_F1
from mlbench.errors import DataError


@pytest.fixture
def squad_dir(tmp_path):
    return write_squad_dir(tmp_path / "squad")


def _features(squad_dir, *, seq=64, stride=8, query=16, training=False):
    examples = squad.read_squad(squad_dir / "dev-v1.1.json")
    tok = squad.load_tokenizer(squad_dir / "vocab.txt")
    return examples, tok, squad.convert(examples, tok, max_seq_length=seq, doc_stride=stride,
                                        max_query_length=query, training=training)


def test_read_examples(squad_dir):
    examples = squad.read_squad(squad_dir / "dev-v1.1.json")
    assert [e.qid for e in examples] == ["q-smith", "q-year", "q-cat", "q-white", "q-red"]
    year = examples[1]
    assert year.answers == ["1895", "in 1895"]
    assert year.doc_tokens[year.start_word] == "1895."  # whitespace words keep their punctuation
    assert examples[0].doc_tokens is examples[2].doc_tokens  # one paragraph, one word list


def test_features_layout_and_stride(squad_dir):
    examples, tok, f = _features(squad_dir)
    per_example = np.bincount(f.example_index, minlength=len(examples))
    assert per_example[:3].tolist() == [1, 1, 1]  # short paragraph: one window
    assert per_example[3] > 2 and per_example[4] > 2  # long paragraph: several windows
    for r in range(len(f)):
        toks, n = f.tokens[r], int(f.attention_mask[r].sum())
        assert toks[0] == "[CLS]" and toks[-1] == "[SEP]" and len(toks) == n <= 64
        sep = toks.index("[SEP]")
        assert f.token_type_ids[r, :sep + 1].sum() == 0 and f.token_type_ids[r, sep + 1:n].all()
        assert (f.token_to_orig[r, sep + 1:n - 1] >= 0).all() and (f.token_to_orig[r, :sep + 1] == -1).all()
        assert f.input_ids[r, n:].sum() == 0 and f.input_ids.dtype == np.int64
    # the window count follows the reference's rule, and each document token is max-context in one window
    ex = examples[3]
    q_len = len(tok.encode(ex.question, add_special_tokens=False).ids)
    d_len = sum(len(tok.encode(w, add_special_tokens=False).ids) for w in ex.doc_tokens)
    spans = squad.doc_spans(d_len, 64 - q_len - 3, 8)
    assert per_example[3] == len(spans)
    rows = np.flatnonzero(f.example_index == 3)
    owners = np.zeros(d_len, dtype=int)
    for k, r in enumerate(rows):
        start, length = spans[k]
        owners[start:start + length] += f.max_context[r, q_len + 2:q_len + 2 + length]
    assert (owners == 1).all()


def test_doc_spans_reference_rule():
    assert squad.doc_spans(10, 4, 2) == [(0, 4), (2, 4), (4, 4), (6, 4)]
    assert squad.doc_spans(3, 10, 5) == [(0, 3)]
    assert squad.doc_spans(9, 4, 8) == [(0, 4), (4, 4), (8, 1)]  # the stride never skips past a window


def test_decoding_recovers_gold_spans(squad_dir):
    examples, _, f = _features(squad_dir, training=True)
    start = np.full(f.input_ids.shape, -5.0, np.float32)
    end = np.full(f.input_ids.shape, -5.0, np.float32)
    for r in range(len(f)):
        if f.start_positions[r] > 0:  # the window that holds the answer
            start[r, f.start_positions[r]] = 8.0
            end[r, f.end_positions[r]] = 8.0
    pred = squad.decode(f, range(len(f)), start, end, examples)
    assert pred["q-smith"] == "Steve Smith"  # "Smith's" in the context: the final-text alignment trims "'s"
    assert pred["q-year"] == "1895"  # "1895." -> the improved span drops the full stop
    assert pred["q-cat"] == "on the old mat"
    assert pred["q-white"] == "the white river flows north"
    scores = squad.evaluate(examples, pred)
    assert scores == {"exact_match": 100.0, "f1": 100.0, "questions": 5}


def test_decoding_rules(squad_dir):
    examples, _, f = _features(squad_dir)
    r = 0  # q-smith, one window: [CLS] query [SEP] doc [SEP]
    start, end = np.zeros((1, 64), np.float32), np.zeros((1, 64), np.float32)
    start[0, 0] = end[0, 0] = 100.0  # [CLS]: not in the document, never an answer
    doc = np.flatnonzero(f.token_to_orig[r] >= 0)
    start[0, doc[3]], end[0, doc[1]] = 50.0, 50.0  # end before start: invalid
    start[0, doc[0]], end[0, doc[2]] = 10.0, 10.0
    pred = squad.decode(f, [r], start, end, examples)
    # valid pairs: (doc0, doc1) scores 60, (doc0, doc2) 20; [CLS] and (doc3, doc1) are thrown out
    assert pred == {"q-smith": "Steve Smith"}
    start[0, doc[0]], end[0, doc[5]] = 200.0, 200.0  # 6 tokens: too long for max_answer_length 3
    assert squad.decode(f, [r], start, end, examples, max_answer_length=3) == pred
    assert squad.decode(f, [r], start, end, examples)["q-smith"] != pred["q-smith"]


def test_final_text_alignment():
    assert squad.final_text("steve smith", "Steve Smith's") == "Steve Smith"
    assert squad.final_text("1895", "(1895-1943).") == "1895"
    assert squad.final_text("beyonce", "Beyoncé's") == "Beyoncé"
    assert squad.final_text("not there", "Steve Smith's") == "Steve Smith's"  # no alignment: the words


@pytest.mark.parametrize(("pred", "truth", "em", "f1"), [
    ("the Cat!", "cat", 1.0, 1.0),
    ("A big  red dog.", "red dog", 0.0, 0.8),
    ("an apple", "The apple", 1.0, 1.0),
    ("Paris", "London", 0.0, 0.0),
    ("the", "a", 1.0, 0.0),  # both normalise to empty: exact, yet no common token for F1
])
def test_official_em_f1(pred, truth, em, f1):
    assert squad.exact_match(pred, truth) == em
    assert squad.f1_score(pred, truth) == pytest.approx(f1)


def test_evaluate_max_over_truths_and_percent(squad_dir):
    examples = squad.read_squad(squad_dir / "dev-v1.1.json")
    pred = {"q-year": "in 1895", "q-cat": "old mat"}
    s = squad.evaluate(examples, pred)
    assert s["questions"] == 2 and s["exact_match"] == 50.0
    assert s["f1"] == pytest.approx(100 * (1 + 2 * (2 / 2 * 2 / 3) / (1 + 2 / 3)) / 2)
    assert squad.evaluate(examples, pred, only_predicted=False)["questions"] == 5


def _broken(tmp_path, mutate):
    doc = small_squad()
    mutate(doc)
    p = tmp_path / "dev-v1.1.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(DataError) as err:
        squad.read_squad(p)
    return str(err.value)


def test_answer_outside_context_names_question(tmp_path):
    def far(doc):
        doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 10_000
    msg = _broken(tmp_path, far)
    assert "q-year" in msg and "dev-v1.1.json" in msg and "outside its context" in msg and "fix:" in msg

    def shifted(doc):
        doc["data"][0]["paragraphs"][0]["qas"][2]["answers"][0]["answer_start"] -= 3
    msg = _broken(tmp_path, shifted)
    assert "q-cat" in msg and "does not match its context" in msg


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda d: d.update(data=[]), "no questions"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].pop("answers"), "q-smith"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].update(id="q-smith"), "repeats an id"),
    (lambda d: d["data"][0]["paragraphs"][0].pop("context"), "context"),
    (lambda d: d.update(version="2.0"), "version"),
    (lambda d: d["data"][1]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start="7"), "q-white"),
])
def test_malformed_files(tmp_path, mutate, words):
    assert words in _broken(tmp_path, mutate)


def test_not_squad_at_all(tmp_path):
    p = tmp_path / "dev-v1.1.json"
    p.write_text(json.dumps([{"context": "x"}]))
    with pytest.raises(DataError, match="top level.*list"):
        squad.read_squad(p)
    p.write_text(json.dumps(small_squad())[:200])
    with pytest.raises(DataError, match="not valid JSON.*truncated"):
        squad.read_squad(p)
    with pytest.raises(DataError, match="not found"):
        squad.read_squad(tmp_path / "missing.json")
    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(DataError, match=r"lacks the special tokens \[PAD\], \[UNK\], \[CLS\], \[SEP\]"):
        squad.load_tokenizer(tmp_path / "vocab.txt")


def test_tiny_qa_data_is_valid_and_deterministic():
    train, dev = qa_data.tiny_squad()
    assert (train, dev) == qa_data.tiny_squad()
    examples = squad.parse_squad(dev, source="tiny dev")
    assert len(examples) == qa_data.TINY_DEV_QUESTIONS
    base = squad.evaluate(examples, qa_data.lexical_baseline(dev))
    assert 20 < base["f1"] < 100  # the baseline answers only the "X is D." half right


def test_max_context_vectorised_matches_rule():
    for n, max_tokens, stride in ((10, 4, 2), (37, 12, 5), (9, 4, 8), (3, 10, 5)):
        spans = squad.doc_spans(n, max_tokens, stride)
        assert squad.max_context_spans(spans, n).tolist() == [squad.max_context_span(spans, p) for p in range(n)]


def _fake_wordnet(path, n=1200):
    """A data.noun in WordNet's format: licence lines, then one synset a line (offset, lexfile, type, word count
    in hex, word/lex-id pairs, pointers, '|' gloss)."""
    lines = ["  1 This software and database is being provided to you, the LICENSEE, by"]
    for i in range(n):
        head = "".join(chr(97 + (i // 26 ** k) % 26) for k in range(3))
        words = f"02 {head}_{'x' * (i % 3 + 1)} 0 {head}y 0" if i % 4 == 0 else f"01 {head}z 0"
        gloss = f"a kind of thing number {i} seen near water; \"the {head}z was there\""
        lines.append(f"{i:08d} 05 n {words} 001 @ 00000001 n 0000 | {gloss}  ")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_mini_construction_from_wordnet_format(tmp_path):
    with pytest.raises(DataError, match="wordnet-base"):
        qa_data.wordnet_file(str(tmp_path))
    data_noun = _fake_wordnet(tmp_path / "data.noun")
    assert qa_data.wordnet_file(str(tmp_path)) == data_noun
    train, dev = qa_data.mini_squad(data_noun)
    assert (train, dev) == qa_data.mini_squad(data_noun)  # deterministic
    train_ex = squad.parse_squad(train, source="train")
    dev_ex = squad.parse_squad(dev, source="dev")
    assert len(dev_ex) > 20 and len(train_ex) > 10 * len(dev_ex)

    def asked(examples):
        pattern = re.compile(r"What (?:is the meaning of|is meant by|does|is) (.+?)(?: mean)?\?$")
        return {pattern.match(e.question).group(1) for e in examples}
    assert not asked(dev_ex) & asked(train_ex)  # split by headword
    base = squad.evaluate(dev_ex, qa_data.lexical_baseline(dev))
    assert 20 < base["f1"] < 100


def test_trivial_answers_are_question_blind():
    context = "Cat is a small animal. Dog: a loyal animal. For example, \"the dog barks\"."
    doc = qa_data._document([(context, [("What is cat?", "a small animal", 7),
                                        ("What is dog?", "a loyal animal", 28)])], "t", "q-")
    got = qa_data.trivial_answers(doc)
    assert set(got) == set(qa_data.TRIVIAL)
    assert all(len(set(preds.values())) == 1 for preds in got.values())  # one answer for every question
    assert got["whole context"]["q-000000"] == context
    assert got["first sentence"]["q-000001"] == "Cat is a small animal."
    assert got["first sentence less 2 words"]["q-000000"] == "a small animal."
    assert got["first sentence after its first link word"]["q-000000"] == "a small animal."
    scores = qa_data.baseline_scores(doc)
    assert scores["f1"] == 100.0  # the lexical reader finds both
    assert scores["best_trivial_f1"] == max(t["f1"] for t in scores["trivial"].values()) < 100.0


@pytest.mark.skipif(not Path(qa_data.WORDNET_DIRS[0], "data.noun").is_file(), reason="needs Debian's wordnet-base")
def test_mini_targets_beyond_every_trivial_answer():
    _, dev = qa_data.mini_squad(qa_data.wordnet_file())
    scores = qa_data.baseline_scores(dev)
    assert scores["questions"] == qa_data.MINI_DEV_QUESTIONS
    # the figures the definition quotes are the data's
    assert scores["f1"] == pytest.approx(MINI_QA_LEXICAL_F1, abs=0.01)
    assert scores["best_trivial_f1"] == pytest.approx(MINI_QA_BEST_TRIVIAL_F1, abs=0.01)
    for target in (MINI.inference_target, *MINI.inference_targets.values()):
        assert all(target > t["f1"] + 10 for t in scores["trivial"].values())
