"""LibriSpeech from OpenSLR in the references' layout: what the speech benchmarks' ``mlbench data prepare`` share.

What the references' download and conversion scripts do, without sox: an archive (``<split>.tar.gz``) downloaded
and verified by the publisher's md5 (and size where known), resumable; extracted (members outside
``LibriSpeech/<split>/`` refused); every FLAC converted to 16 kHz 16-bit mono WAV with ``soundfile``; and the
split's manifest in the references' format (``convert_librispeech.py``'s)::

    ROOT/librispeech-<split>-wav.json      ROOT/<split>-wav/<speaker>/<chapter>/<id>.wav

Run again after an interruption: a verified archive is not fetched again, a WAV already converted is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from mlbench.errors import DataError
from mlbench.speech import audio as audio_io

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


def manifest_entry(fname: str, samples: int, transcript: str) -> dict:
    """One utterance in the references' manifest format."""
    duration = round(samples / audio_io.SAMPLE_RATE, 4)
    return {"transcript": transcript, "original_duration": duration, "original_num_samples": samples,
            "files": [{"channels": 1, "sample_rate": float(audio_io.SAMPLE_RATE), "bitdepth": 16,
                       "bitrate": float(audio_io.SAMPLE_RATE * 16), "duration": duration, "num_samples": samples,
                       "encoding": "Signed Integer PCM", "silent": False, "fname": fname, "speed": 1}]}


def manifest_name(split: str) -> str:
    return f"librispeech-{split}-wav.json"


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
    manifest = root / manifest_name(split)
    tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, manifest)
    say(f"{split}: {len(entries)} utterances -> {manifest.name}")
    return manifest


def fetch_split(split: str, root: Path, *, base_url: str = BASE_URL, retries: int = 3, keep_archives: bool = True,
                say=print) -> Path:
    """One split downloaded (verified, resumable) into ``root/archives``, extracted and converted; returns its
    manifest. ``root`` is a folder the caller is writing (``folders.writing``)."""
    from mlbench.data.download import fetch_resumable

    (root / "archives").mkdir(exist_ok=True)
    archive = root / "archives" / f"{split}.tar.gz"
    say(f"{split}: downloading {base_url.rstrip('/')}/{split}.tar.gz (verified by md5)")
    fetch_resumable(f"{base_url.rstrip('/')}/{split}.tar.gz", archive, _verifier(split), retries=retries,
                    timeout=120, hint="check --base-url and the network; run again to resume")
    src = _extract(archive, split, root / "archives", say)
    manifest = _convert(src, split, root, say)
    if not keep_archives:
        import shutil

        shutil.rmtree(src, ignore_errors=True)
    return manifest
