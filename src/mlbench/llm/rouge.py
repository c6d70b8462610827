"""ROUGE for summaries as MLPerf's language-model references score them, without any download at run time.

The references (mlcommons/inference ``language/llama3.1-8b/evaluation.py``, ``llama2-70b``) strip each prediction
and reference, put every sentence on its own line (nltk's ``sent_tokenize``: Punkt models that are downloaded at
run time) and score with ``rouge-score`` through ``evaluate``: ROUGE-1/2/L/Lsum F-measures with the Porter
stemmer, one score per sample, the mean x 100 rounded to 4 decimals. ``gen_len`` is the sum of the predictions'
lengths in characters after that line splitting, ``gen_num`` their number.

Here the scoring is ``rouge-score``'s own ``RougeScorer`` (the package the references rely on), called as
``evaluate`` calls it (``score(reference, prediction)``, F-measure). Only the sentence splitter is ours
(:func:`sentences`): it affects ROUGE-Lsum alone (the other three ignore line breaks) and ``gen_len`` by at most
the whitespace it turns into line breaks. Rules: a sentence ends after ``.``, ``!`` or ``?`` (with any closing
quotes or brackets after it) followed by white space and then a capital letter, a digit or an opening quote or
bracket; not after a known abbreviation (Mr., Dr., U.S., Jan., ...), a single capital initial (J. Smith), or a
number's decimal point. A line break in the text always ends a sentence. It is close to Punkt on news prose, not
identical: a ROUGE-Lsum within a few hundredths of the reference's is expected, not an exact match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

#: Abbreviations after which a full stop does not end a sentence (lower case, without the final dot).
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt ft gen gov sen rep col lt sgt capt cmdr adm maj rev hon pres supt insp det
co corp inc ltd bros no nos vs etc al approx dept est fig vol jan feb mar apr jun jul aug sep sept oct nov dec
mon tue wed thu fri sat sun u.s u.k u.n e.g i.e a.m p.m d.c u.s.a ph.d b.a m.a
""".split())

_END = re.compile(r"""[.!?]+['"\u2019\u201d)\]]*(?=\s+['"\u2018\u201c(\[]?[A-Z0-9])""")


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences (module docstring: the rules), each stripped; empty ones dropped."""
    out: list[str] = []
    for para in text.split("\n"):
        start = 0
        for m in _END.finditer(para):
            end = m.end()
            words = para[start:m.start() + 1].split()
            stem = (words[-1] if words else "").rstrip(".").lstrip("('\"\u2018\u201c").lower()
            if m.group().rstrip("'\"\u2019\u201d)]") == ".":  # one full stop: maybe an abbreviation
                if stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
                    continue
            out.append(para[start:end].strip())
            start = end
        out.append(para[start:].strip())
    return [s for s in out if s]


def lines(text: str) -> str:
    """What the references score: ``text`` stripped, one sentence per line."""
    return "\n".join(sentences(text.strip()))


def score(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum (mean F-measure x 100, 4 decimals), ``gen_len`` (characters) and ``gen_num``, as the
    references compute them (module docstring)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    preds = [lines(p) for p in predictions]
    refs = [lines(r) for r in references]
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    sums = dict.fromkeys(ROUGE_TYPES, 0.0)
    for ref, pred in zip(refs, preds, strict=True):
        s = scorer.score(ref, pred)
        for k in ROUGE_TYPES:
            sums[k] += s[k].fmeasure
    n = max(1, len(preds))
    out: dict[str, float] = {k: round(sums[k] / n * 100, 4) for k in ROUGE_TYPES}
    out["gen_len"] = float(sum(len(p) for p in preds))
    out["gen_num"] = float(len(preds))
    return out


def checker_text(scores: dict[str, float]) -> str:
    """The lines the official submission checker reads from ``accuracy.txt`` for a summarisation benchmark: the
    reference evaluation script's printed dict (``'rouge1': '38.9', ...``, ``'gen_len': N``, ``'gen_num': N``)."""
    parts = [f"'{k}': '{scores[k]:.4f}'" for k in ROUGE_TYPES]
    parts += [f"'gen_len': {int(scores['gen_len'])}", f"'gen_num': {int(scores['gen_num'])}"]
    return "\nResults\n\n{" + ", ".join(parts) + "}\n"
