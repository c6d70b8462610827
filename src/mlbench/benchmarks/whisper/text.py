"""Transcripts as the Whisper reference scores them: character labels, text normalisation, WER.

Responses (mlcommons/inference ``speech2text``, read 2026-12): the SUT lower-cases and strips the generated text
and keeps only the characters of its 42 labels (space, a-z, apostrophe, 0-9, ``$%+-``), logged as int64 label ids;
``accuracy_eval.py`` maps them back to text. Both the transcripts and the hypotheses are then normalised with
OpenAI Whisper's English text normaliser, and the WER counts words run together as one (``helpers.py``: a
hypothesis word that equals up to three reference words joined, or the reverse, is one word on both sides) before
the word-level edit distance.

:func:`normalize` is mlbench's own normaliser after the same rules, a subset: lower case; text in brackets or
parentheses dropped; the hesitations hmm/mm/mhm/mmm/uh/um dropped; contractions and titles spelt out (won't ->
will not, n't -> not, 're -> are, 'll -> will, 've -> have, 'm -> am, mr -> mister, ...); spoken numbers written
as digits (``twenty five`` -> ``25``, ``one hundred and three`` -> ``103``, ``two thousand and ten`` ->
``2010``; numbers spoken one after another joined: ``five six`` -> ``56``; ``one`` on its own stays a word); 's
-> is; every symbol but ``%`` and ``$`` a space. What it does not do (the reference's does): British to American
spelling (its 1,700-word table), currency and decimal numbers, ordinals as ``1st``, a scale word on its own
(``a thousand`` stays words). On LibriSpeech, whose transcripts hold only letters, apostrophes and spaces, the
differences reach only numbers written in those ways.
"""

from __future__ import annotations

import re

from mlbench.speech.wer import edit_distance

LABELS = " abcdefghijklmnopqrstuvwxyz'0123456789$%+-"  # the reference's 42 response labels, in its order
_INDEX = {c: i for i, c in enumerate(LABELS)}


def to_labels(text: str) -> list[int]:
    """The reference SUT's response: ``text`` lower-cased and stripped, characters outside the labels dropped."""
    return [_INDEX[c] for c in text.lower().strip() if c in _INDEX]


def from_labels(ids) -> str:
    return "".join(LABELS[int(i)] for i in ids if 0 <= int(i) < len(LABELS))


def outside_labels(text: str) -> str:
    """The characters of ``text`` (lower-cased) that the labels cannot carry, in order of first appearance."""
    return "".join(dict.fromkeys(c for c in text.lower() if c not in _INDEX and not c.isspace()))


# ---------------------------------------------------------------- normalisation

_FILLERS = re.compile(r"\b(hmm|mm|mhm|mmm|uh|um)\b")
_REPLACE = [(re.compile(p), r) for p, r in (
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\blet's\b", "let us"), (r"\bain't\b", "aint"),
    (r"\by'all\b", "you all"), (r"\bwanna\b", "want to"), (r"\bgotta\b", "got to"), (r"\bgonna\b", "going to"),
    (r"\bi'ma\b", "i am going to"), (r"\bimma\b", "i am going to"), (r"\bwoulda\b", "would have"),
    (r"\bcoulda\b", "could have"), (r"\bshoulda\b", "should have"), (r"\bma'am\b", "madam"),
    (r"\bmr\b", "mister "), (r"\bmrs\b", "missus "), (r"\bst\b", "saint "), (r"\bdr\b", "doctor "),
    (r"\bprof\b", "professor "), (r"\bcapt\b", "captain "), (r"\bgov\b", "governor "), (r"\bald\b", "alderman "),
    (r"\bgen\b", "general "), (r"\bsen\b", "senator "), (r"\brep\b", "representative "),
    (r"\bpres\b", "president "), (r"\brev\b", "reverend "), (r"\bhon\b", "honorable "),
    (r"\basst\b", "assistant "), (r"\bassoc\b", "associate "), (r"\blt\b", "lieutenant "),
    (r"\bcol\b", "colonel "), (r"\bjr\b", "junior "), (r"\bsr\b", "senior "), (r"\besq\b", "esquire "),
    (r"'d been\b", " had been"), (r"'s been\b", " has been"), (r"'d gone\b", " had gone"),
    (r"'s gone\b", " has gone"), (r"'d done\b", " had done"), (r"'s got\b", " has got"),
    (r"n't\b", " not"), (r"'re\b", " are"), (r"'d\b", " would"), (r"'ll\b", " will"), (r"'t\b", " not"),
    (r"'ve\b", " have"), (r"'m\b", " am"), (r"'s\b", " is"),
)]

_ONES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}


def _number_at(words: list[str], i: int) -> tuple[int, int]:
    """(value, words read) of the spoken cardinal number starting at ``words[i]``; (0, 0) when none starts there."""
    total, current, last_scale, j = 0, 0, 10 ** 12, i
    while j < len(words):
        w = words[j]
        low = current % 100
        if w in _ONES and (low == 0 or (low >= 20 and low % 10 == 0 and 0 < _ONES[w] < 10)):
            if j > i and low == 0 and current == 0 and total == 0:
                break
            current += _ONES[w] if w != "zero" or j == i else 0
        elif w in _TENS and low == 0:
            current += _TENS[w]
        elif w == "hundred" and 0 < current < 100:
            current *= 100
        elif w in _SCALES and w != "hundred" and current and _SCALES[w] < last_scale:
            total += current * _SCALES[w]
            current, last_scale = 0, _SCALES[w]
        elif w == "and" and j > i and (current >= 100 or total) and current % 100 == 0 and j + 1 < len(words) \
                and (words[j + 1] in _ONES or words[j + 1] in _TENS):
            pass  # "one hundred and three"
        else:
            break
        j += 1
        if w == "zero" and j == i + 1:
            break  # "zero" is a number of its own
    return (total + current, j - i) if j > i else (0, 0)


def _numbers(words: list[str]) -> list[str]:
    """Runs of spoken cardinal numbers as digits (see the module's docstring for what is covered)."""
    out: list[str] = []
    i, after_number = 0, False
    while i < len(words):
        value, n = _number_at(words, i)
        if n and words[i:i + n] == ["one"] and not after_number and not _number_at(words, i + 1)[1]:
            n = 0  # "one" on its own stays a word ("one of them")
        if n:
            if after_number:  # numbers spoken one after another are one: "five six" -> "56"
                out[-1] += str(value)
            else:
                out.append(str(value))
            i += n
            after_number = True
        else:
            after_number = False
            out.append(words[i])
            i += 1
    return out


def normalize(text: str) -> str:
    """mlbench's English text normalisation (the reference's rules, the subset the module's docstring lists)."""
    s = text.lower()
    s = re.sub(r"[<\[][^>\]]*[>\]]", " ", s)  # [noise], <tag>
    s = re.sub(r"\(([^)]+?)\)", " ", s)  # (aside)
    s = _FILLERS.sub(" ", s)
    s = re.sub(r"\s+'", "'", s)  # "it 's" -> "it's"
    for pattern, replacement in _REPLACE:
        s = pattern.sub(replacement, s)
    s = re.sub(r"(\d),(\d)", r"\1\2", s)  # 1,000 -> 1000
    s = re.sub(r"[^a-z0-9'%$ ]+", " ", s)  # every other symbol (and accents' leftovers) a space
    s = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", s)  # quotes, not apostrophes inside words
    return " ".join(_numbers(s.split()))


# ---------------------------------------------------------------- WER

def join_run_together(ref: list[str], hyp: list[str]) -> tuple[list[str], list[str]]:
    """Both word lists with words run together made one: walking both lists side by side, where the words differ,
    ``hyp``'s word equal to the next k <= 3 reference words joined (or the reverse) makes those k words one."""
    r_out: list[str] = []
    h_out: list[str] = []
    i = j = 0
    while i < len(ref) and j < len(hyp):
        step_r = step_h = 1
        if ref[i] != hyp[j]:
            for k in range(2, 4):
                if i + k <= len(ref) and "".join(ref[i:i + k]) == hyp[j]:
                    step_r = k
                    break
                if j + k <= len(hyp) and "".join(hyp[j:j + k]) == ref[i]:
                    step_h = k
                    break
        r_out.append("".join(ref[i:i + step_r]))
        h_out.append("".join(hyp[j:j + step_h]))
        i, j = i + step_r, j + step_h
    return r_out + ref[i:], h_out + hyp[j:]


def word_errors(hyp: str, ref: str, *, normalise: bool = True) -> tuple[int, int]:
    """(errors, reference words) of one utterance, as the reference scores it: both texts normalised, words run
    together joined, then the edit distance; the count of words is the normalised reference's."""
    if normalise:
        hyp, ref = normalize(hyp), normalize(ref)
    r, h = ref.split(), hyp.split()
    rj, hj = join_run_together(r, h)
    return edit_distance(rj, hj), len(r)


def wer(hyps: list[str], refs: list[str]) -> float:
    """Corpus WER: every utterance's errors over all reference words."""
    errors = words = 0
    for h, r in zip(hyps, refs, strict=True):
        e, n = word_errors(h, r)
        errors, words = errors + e, words + n
    return errors / words if words else float("inf")
