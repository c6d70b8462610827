"""Transcripts to token ids and back, as the RNN-T reference's ``Tokenizer`` does.

The reference's labels are the 28 characters `` abcdefghijklmnopqrstuvwxyz'``; with a SentencePiece model
(the reference's ``librispeech1023.model``: unigram, 1023 pieces, trained on the training transcripts) the
tokens are its pieces. The blank of the RNN-T is one more class, the last (index ``num_labels``).
Transcripts are lower-cased with runs of white space made one space; any other character outside the labels
is refused (DataError naming where it was), never silently dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlbench.errors import DataError
from mlbench.speech.wer import edit_distance

LABELS = " abcdefghijklmnopqrstuvwxyz'"  # the reference's tokenizer.labels
SENTENCEPIECE_VOCAB = 1023  # the reference's create_sentencepieces.sh: vocab_size=1023


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


class Tokenizer:
    """Characters (``sentencepiece_model`` None) or SentencePiece pieces; ``blank`` is the last class."""

    def __init__(self, sentencepiece_model: str | Path | None = None, labels: str = LABELS):
        self.labels = labels
        self._index = {c: i for i, c in enumerate(labels)}
        self.sp = None
        if sentencepiece_model is not None:
            try:
                import sentencepiece as spm
            except ImportError as exc:
                raise DataError("the reference size tokenises with SentencePiece, which is not installed",
                                "pip install sentencepiece (the speech extra)") from exc
            p = Path(sentencepiece_model)
            if not p.exists():
                raise DataError(f"SentencePiece model not found: {p}",
                                "run `mlbench data prepare rnnt --root DIR` (it trains librispeech1023.model)")
            try:
                self.sp = spm.SentencePieceProcessor(model_file=str(p))
            except (OSError, RuntimeError) as exc:  # a folder, an unreadable or damaged file (protobuf parse)
                raise DataError(f"cannot load the SentencePiece model {p}: {' '.join(str(exc).split())[:160]}",
                                "re-create it with `mlbench data prepare rnnt --root DIR` (it trains "
                                "librispeech1023.model), or copy the reference's model again") from None
        self.num_labels = self.sp.get_piece_size() if self.sp is not None else len(labels)

    @property
    def blank(self) -> int:
        return self.num_labels

    @property
    def num_classes(self) -> int:
        return self.num_labels + 1

    def check(self, text: str, where: str) -> str:
        """The normalised transcript; a character outside the labels is a DataError naming ``where``."""
        norm = normalize(text)
        bad = sorted({c for c in norm if c not in self._index})
        if bad:
            raise DataError(f"{where}: transcript {text[:60]!r} has characters outside the tokenizer's labels: "
                            f"{''.join(bad)!r}", f"allowed: {self.labels!r} (after lower-casing); fix the manifest")
        if not norm:
            raise DataError(f"{where}: empty transcript", "every utterance needs a transcript")
        return norm

    def encode(self, text: str) -> list[int]:
        if self.sp is not None:
            return list(self.sp.encode(text))
        return [self._index[c] for c in text]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if 0 <= int(i) < self.num_labels]
        if self.sp is not None:
            return self.sp.decode(ids)
        return "".join(self.labels[i] for i in ids)


def train_sentencepiece(transcripts: list[str], model_prefix: str | Path, vocab_size: int = SENTENCEPIECE_VOCAB
                        ) -> Path:
    """The reference's SentencePiece model: unigram, ``vocab_size`` pieces, full character coverage, no
    BOS/EOS, trained on the training transcripts. Returns the ``.model`` path."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(sentence_iterator=iter(transcripts), model_prefix=str(model_prefix),
                                   vocab_size=vocab_size, character_coverage=1.0, bos_id=-1, eos_id=-1,
                                   model_type="unigram", minloglevel=2)
    return Path(f"{model_prefix}.model")


def word_errors(hyp: str, ref: str) -> tuple[int, int]:
    """(word-level edit distance, words in the reference)."""
    r = ref.split()
    return edit_distance(r, hyp.split()), len(r)


def wer(hyps: list[str], refs: list[str]) -> float:
    """Corpus word error rate: total edits over total reference words (the reference's ``word_error_rate``)."""
    errs = words = 0
    for h, r in zip(hyps, refs, strict=True):
        e, n = word_errors(h, r)
        errs += e
        words += n
    return errs / words if words else float("inf")
