"""``mlbench data prepare rnnt``: LibriSpeech in the layout the RNN-T reference trains on.

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

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mlbench.config import opt
from mlbench.data import folders
from mlbench.errors import ConfigError, DataError

BASE_URL = "https://www.openslr.org/resources/12/"
# The publisher's md5sum.txt; sizes where known (bytes), None otherwise.
ARCHIVES: dict[str, tuple[str, int | None]] = {
    "dev-clean": ("42e2234ba48799c1f50f24a7926300a1", 337_926_286),
    "dev-other": ("c8d0bcc9cca99d4f8b62fcc847357931", None),
    "test-clean": ("32fa31d27d2e1cad72775fee3f4849a9", None),
    "test-other": ("fb5a50374b501bb3bac4815ee91d3135", None),
    "train-clean-100": ("2a93770f6d5c6c964bc36631d331a522", None),
    "train-clean-360": ("c0e676e450a7ff2f54aeade5171606fa", None),
    "train-other-500": ("d1a0fd59409feb2c614ce4d30c387708", None),
}
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


def md5_file(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - the publisher's checksum is md5
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _verifier(split: str):
    md5, size = ARCHIVES[split]

    def verify(path: Path) -> None:
        if size is not None and path.stat().st_size != size:
            raise DataError(f"{path.name}: {path.stat().st_size} bytes, expected {size}", None)
        got = md5_file(path)
        if got != md5:
            raise DataError(f"{path.name}: md5 {got} does not match the published {md5}", None)
    return verify


def _extract(archive: Path, split: str, dest: Path, say) -> Path:
    """``LibriSpeech/<split>/`` from the archive under ``dest``; any other member is refused."""
    marker = dest / f".extracted-{split}"
    out = dest / "LibriSpeech" / split
    if marker.is_file() and out.is_dir():
        return out
    say(f"extracting {archive.name}")
    prefix = f"LibriSpeech/{split}/"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                name = m.name.lstrip("./") if m.name.startswith("./") else m.name
                if name in ("LibriSpeech", "LibriSpeech/") or name.startswith("LibriSpeech/") and (
                        not name.startswith(prefix) and name.count("/") == 1):
                    if m.isfile() or m.isdir():  # LibriSpeech/*.TXT (licence, speakers): harmless
                        members.append(m)
                    continue
                if not (name.startswith(prefix) or name == prefix.rstrip("/")):
                    raise DataError(f"{archive.name}: unexpected member {m.name!r} (outside {prefix})",
                                    "the archive is not a LibriSpeech split; delete it and run again")
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"{archive.name}: member {m.name!r} is a link or device", "delete it, run again")
                members.append(m)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot extract {archive}: {exc}", "delete the archive and run again") from exc
    marker.write_text("ok\n")
    return out


def _convert(src: Path, split: str, root: Path, say) -> Path:
    """FLAC -> WAV for one split and its manifest; returns the manifest path."""
    from mlbench.speech import audio as audio_io
    from mlbench.benchmarks.rnnt.synthetic import manifest_entry

    if not audio_io.have_soundfile():
        raise DataError("converting LibriSpeech's FLAC to WAV needs the soundfile package",
                        "pip install soundfile (the speech extra; it bundles libsndfile)")
    import soundfile as sf

    entries = []
    transcripts = sorted(src.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise DataError(f"no *.trans.txt under {src}", "the archive is not a LibriSpeech split")
    for tfile in transcripts:
        for line in tfile.read_text().splitlines():
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            flac = tfile.parent / f"{uid}.flac"
            rel = Path(f"{split}-wav") / tfile.parent.parent.name / tfile.parent.name / f"{uid}.wav"
            wav = root / rel
            if not wav.is_file():
                if not flac.is_file():
                    raise DataError(f"{tfile}: {uid}.flac is missing", "delete the archive and run again")
                try:
                    x, rate = sf.read(str(flac), dtype="float32")
                except Exception as exc:  # noqa: BLE001 - libsndfile errors
                    raise DataError(f"cannot decode {flac}: {exc}", "delete the archive and run again") from exc
                if rate != audio_io.SAMPLE_RATE:
                    x = audio_io.resample(x, rate)
                wav.parent.mkdir(parents=True, exist_ok=True)
                tmp = wav.with_name(f".{wav.name}.{os.getpid()}.tmp")
                audio_io.write_wav(tmp, x)
                os.replace(tmp, wav)
            n = len(audio_io.read_wav(wav))
            entries.append(manifest_entry(rel.as_posix(), n, text.strip().lower()))
    manifest = root / f"librispeech-{split}-wav.json"
    tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, manifest)
    say(f"{split}: {len(entries)} utterances -> {manifest.name}")
    return manifest


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
    from mlbench.data.download import fetch_resumable

    (root / "archives").mkdir(exist_ok=True)
    written: list[Path] = []
    for split in splits:
        archive = root / "archives" / f"{split}.tar.gz"
        say(f"{split}: downloading {cfg.base_url.rstrip('/')}/{split}.tar.gz (verified by md5)")
        fetch_resumable(f"{cfg.base_url.rstrip('/')}/{split}.tar.gz", archive, _verifier(split), retries=cfg.retries,
                        timeout=120, hint="check --base-url and the network; run again to resume")
        src = _extract(archive, split, root / "archives", say)
        written.append(_convert(src, split, root, say))
        if not cfg.keep_archives:
            import shutil

            shutil.rmtree(src, ignore_errors=True)
    train = [root / f"librispeech-{s}-wav.json" for s in ARCHIVES if s.startswith("train")]
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
