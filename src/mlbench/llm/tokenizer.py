"""Byte-level BPE tokenizers trained here with Hugging Face ``tokenizers`` (the kind Llama 3 uses), saved in the
files a Hugging Face model directory carries (``tokenizer.json``, ``tokenizer_config.json``,
``special_tokens_map.json``) so that ``transformers.AutoTokenizer`` reads them back.

Two special tokens bracket documents, named as Llama 3's: ``<|begin_of_text|>`` (id 0) and ``<|end_of_text|>``
(id 1). Training is deterministic for the same texts and settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def train(texts: Iterable[str], vocab_size: int, dest: str | Path) -> Path:
    """A byte-level BPE of ``vocab_size`` ids trained on ``texts``, saved into the folder ``dest``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS,
        "model_max_length": 1 << 30, "add_bos_token": False, "clean_up_tokenization_spaces": False}, indent=1))
    (dest / "special_tokens_map.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}, indent=1))
    return dest


class Encoder:
    """A trained tokenizer folder, for encoding documents in bulk."""

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.bos = self.tok.token_to_id(BOS)
        self.eos = self.tok.token_to_id(EOS)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def files(self) -> list[Path]:
        return [self.folder / f for f in FILES]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def documents(self, texts: list[str], *, bos: bool = True, eos: bool = True,
                  batch: int = 256) -> Iterator[list[int]]:
        """Token ids of each text, bracketed by the document tokens."""
        for i in range(0, len(texts), batch):
            for enc in self.tok.encode_batch(texts[i:i + batch]):
                yield ([self.bos] if bos else []) + enc.ids + ([self.eos] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)
