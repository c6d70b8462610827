"""``mlbench data prepare rnnt``: LibriSpeech in the layout the RNN-T reference trains on (download, verification
and conversion: :mod:`mlbench.speech.librispeech`, shared with Whisper).

What the reference's ``download_librispeech.sh``, ``preprocess_librispeech.sh`` and
``create_sentencepieces.sh`` do, without sox: the OpenSLR archives (``<split>.tar.gz``) downloaded and
verified by the publisher's md5 (and size where known), resumable; extracted (members outside
``LibriSpeech/<split>/`` refused); every FLAC converted to 16 kHz 16-bit WAV with ``soundfile``; a manifest
per split in the reference's format; and the reference's SentencePiece model (unigram, 1023 pieces) trained
on the training transcripts::

    ROOT/librispeech-<split>-wav.json      ROOT/<split>-wav/<speaker>/<chapter>/<id>.wav
    ROOT/sentencepieces/librispeech1023.model

Run it again after an interruption: a verified archive is not fetched again, a WAV already converted is kept.
``--root`` must be a new or empty folder, or one this command made (it holds a ``.mlbench-data`` marker): a
folder holding other files is refused before anything is downloaded, and left as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlbench.config import opt
from mlbench.data import folders
from mlbench.errors import ConfigError, DataError
from mlbench.speech.librispeech import ARCHIVES, BASE_URL, fetch_split, manifest_name

DEFAULT_SPLITS = "dev-clean,train-clean-100,train-clean-360,train-other-500"


@dataclass(kw_only=True)
class PrepareConfig:
    """Options of ``mlbench data prepare rnnt``."""

    root: str = opt("", "where to build the data set (manifests, <split>-wav/, sentencepieces/): a new or empty "
                        "folder, or one this command made (it resumes there)")
    splits: str = opt(DEFAULT_SPLITS, "comma-separated LibriSpeech splits (" + ", ".join(ARCHIVES) + ")")
    base_url: str = opt(BASE_URL, "base address of the LibriSpeech archives (<split>.tar.gz)")
    retries: int = opt(3, "attempts per archive", min=1, max=100)
    keep_archives: bool = opt(True, "keep the downloaded .tar.gz archives (and the extracted FLAC files)")
    vocab_size: int = opt(1023, "SentencePiece pieces (the reference's 1023)", min=8, max=100_000)


def prepare(cfg: PrepareConfig, say=print) -> list[Path]:
    if not cfg.root:
        raise ConfigError("--root is required", "mlbench data prepare rnnt --root DIR")
    splits = [s.strip() for s in cfg.splits.split(",") if s.strip()]
    unknown = [s for s in splits if s not in ARCHIVES]
    if unknown or not splits:
        raise ConfigError(f"unknown LibriSpeech split(s): {', '.join(unknown) or '(none)'}",
                          f"known: {', '.join(ARCHIVES)}")
    root = Path(cfg.root)
    with folders.writing(root, "LibriSpeech for RNN-T", say=say):
        return _prepare(cfg, root, splits, say)


def _prepare(cfg: PrepareConfig, root: Path, splits: list[str], say) -> list[Path]:
    written = [fetch_split(split, root, base_url=cfg.base_url, retries=cfg.retries, keep_archives=cfg.keep_archives,
                           say=say) for split in splits]
    train = [root / manifest_name(s) for s in ARCHIVES if s.startswith("train")]
    train = [p for p in train if p.is_file()]
    if train:
        from mlbench.benchmarks.rnnt.text import train_sentencepiece

        texts = [e["transcript"] for p in train for e in json.loads(p.read_text())]
        (root / "sentencepieces").mkdir(exist_ok=True)
        say(f"training the SentencePiece model ({cfg.vocab_size} pieces) on {len(texts)} transcripts")
        try:
            written.append(train_sentencepiece(texts, root / "sentencepieces" / f"librispeech{cfg.vocab_size}",
                                               cfg.vocab_size))
        except ImportError as exc:
            raise DataError("training the SentencePiece model needs the sentencepiece package",
                            "pip install sentencepiece (the speech extra)") from exc
        except RuntimeError as exc:  # e.g. too few distinct pieces in the transcripts for vocab_size
            raise DataError(f"SentencePiece training failed: {str(exc)[:300]}",
                            "prepare all three training splits (the reference's 1023 pieces need them)") from exc
    return written
