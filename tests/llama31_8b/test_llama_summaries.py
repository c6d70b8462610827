"""The llama3.1-8b mini inference task: WordNet entries as documents, ``lemma: definition`` as their summary."""

import math

import pytest
import torch

from mlbench.benchmarks.llama31_8b import summaries
from mlbench.benchmarks.llama31_8b.definition import TINY
from mlbench.errors import DataError
from mlbench.llm import llama, wordnet

NOUN = ("02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 02083346 n 0000 ~ 01322604 n 0000 | "
        'a member of the genus Canis; "the dog barked all night"; "a good dog"  ')
CANINE = "02083346 05 n 01 canine 0 001 ~ 02084071 n 0000 | any of various fissiped mammals  "
ADJ = "00001740 00 a 01 able(a) 0 001 ! 00002098 a 0101 | having the necessary means or skill  "


def test_data_lines_parse_into_synsets():
    dog = wordnet.parse_line(NOUN)
    assert dog.lemmas == ("dog", "domestic dog", "Canis familiaris")
    assert dog.definition == "a member of the genus Canis"
    assert dog.examples == ("the dog barked all night", "a good dog")
    assert dog.hypernyms == (("02083346", "n"),)  # the '@' pointer, not the '~' hyponym
    able = wordnet.parse_line(ADJ)
    assert able.lemmas == ("able(a)",) and wordnet.clean_lemma(able.lemmas[0]) == "able"
    assert wordnet.parse_line("  1 This software and database is being provided to you") is None


def test_missing_wordnet_is_named_with_its_install(tmp_path):
    with pytest.raises(DataError, match="wordnet-base"):
        wordnet.synsets(tmp_path)


def test_documents_hide_the_definition_among_distractors(tmp_path):
    for name, lines in (("noun", [CANINE, NOUN]), ("verb", []), ("adj", [ADJ]), ("adv", [])):
        (tmp_path / f"data.{name}").write_text("\n".join(lines) + "\n")
    synsets = wordnet.synsets(tmp_path)
    train, held = summaries.examples(synsets)
    rows = {r["output"].split(":")[0]: r for r in train + held}
    dog = rows["dog"]
    assert dog["output"] == "dog: a member of the genus Canis"
    fields = dict(line.split(": ", 1) for line in dog["input"].removesuffix(summaries.ASK).splitlines())
    assert fields["definition"] == "a member of the genus Canis"
    assert fields["broader term"] == "canine (any of various fissiped mammals)"
    assert fields["related term"] == "canine (any of various fissiped mammals)"  # the synset before it
    assert fields["lemmas"] == "dog, domestic dog, Canis familiaris"
    assert summaries.examples(synsets) == (train, held)  # the field order is drawn from the synset: fixed
    assert rows["able"]["output"] == "able: having the necessary means or skill"
    assert summaries.lead("a b c\nd e" + summaries.ASK, 4) == "a b c d"


def test_trivial_baselines_score_each_lead_and_a_constant():
    rows = [{"input": "definition: a small dog\nlemmas: puppy" + summaries.ASK, "output": "puppy: a small dog"},
            {"input": "lemmas: cat\ndefinition: a feline" + summaries.ASK, "output": "cat: a feline"}]
    b = summaries.baselines(rows, summaries.rouge_scores)
    assert b["best_lead"] in b and 0 < b["lead-5"]["rouge1"] <= 100
    assert b["constant"]["answer"] and set(b["constant"]) >= {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert summaries.rouge_scores(["puppy: a small dog"], ["puppy: a small dog"])["rouge1"] == 100.0


def test_fine_tuning_scores_the_answers_and_generates():
    torch.manual_seed(0)
    model = llama.build(TINY.hparams["model"], init_std=0.02)
    model.config.use_cache = True
    examples = [([0, 5, 6, 7], [8, 9, 1], None), ([0, 5, 7], [9, 1], None)] * 4
    run = summaries.fine_tune(model, examples, {**summaries.TUNE, "steps": 3, "batch": 2, "warmup": 1},
                              say=lambda s: None)
    assert run["steps"] == 3 and math.isfinite(run["final_loss"])
    outs = summaries.generate(model, [[0, 5, 6, 7]], max_new_tokens=4, eos_id=1)
    assert len(outs) == 1 and len(outs[0]) <= 4 and 1 not in outs[0]
