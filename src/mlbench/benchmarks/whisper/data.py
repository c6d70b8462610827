"""LibriSpeech dev-clean + dev-other in the Whisper reference's layout, and the small generated sets.

The reference (mlcommons/inference ``speech2text``: ``download_dataset.sh``, ``utils/convert_librispeech.py``,
``utils/repackage_librispeech.py``, ``manifest.py``, read 2026-12) converts both splits' FLAC to 16 kHz 16-bit
mono WAV, then packs each speaker-chapter's utterances, in order, into clips of at most 30 s (0.5 s of silence
between utterances, transcripts joined by a space; an utterance over 30 s is left out) and writes one manifest::

    DATA_DIR/dev-all-repack.json       DATA_DIR/dev-all-repack/<speaker>-<chapter>_<k>.wav

``dev-all-repack.json`` is a JSON list, one entry per clip: ``{"transcript": "...", "files": [{"fname": ...,
"channels": 1, "sample_rate": 16000.0, "bitdepth": 16, "duration": ..., "num_samples": ..., "speed": 1, ...}],
"original_duration": ..., "original_num_samples": ...}`` (1,633 clips). The reference's ``fname`` is the path its
script wrote (``/data/dev-all-repack/...`` in its container); mlbench writes it relative to the data directory
and reads either (an absolute name is looked up as ``dev-all-repack/<file name>`` under ``--data-dir``).

Reading checks the manifest (valid JSON, a list of entries of that shape, durations finite and positive, each clip
no longer than the model's 30 s window, transcripts within the response labels) before anything runs; each
problem is one DataError naming the manifest entry and the fix. The WAVs are read when LoadGen loads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlbench.benchmarks.whisper.text import outside_labels
from mlbench.errors import DataError
from mlbench.finite import finite_number
from mlbench.speech import audio as audio_io
from mlbench.speech.librispeech import manifest_entry
from mlbench.untrusted import inside, load_json

MANIFEST = "dev-all-repack.json"
CLIPS = "dev-all-repack"
MAX_CLIP_S = 30.0  # the reference's repackaging bound and Whisper's window
PAD_S = 0.5  # silence between packed utterances
PREPARE_HINT = "build the layout with `mlbench data prepare whisper --root DIR` and pass --data-dir DIR"


@dataclass(frozen=True)
class Clip:
    path: Path
    duration: float
    num_samples: int
    transcript: str


def read_manifest(data_dir: str | Path, max_clip_s: float = MAX_CLIP_S) -> list[Clip]:
    """The clips of ``data_dir/dev-all-repack.json``, every entry checked (see the module's docstring)."""
    root = Path(data_dir)
    path = root / MANIFEST
    entries = load_json(path, "manifest", expect=list,
                        hint=PREPARE_HINT if not path.exists() else
                        "re-create it (mlbench data prepare whisper), or fix it: a JSON list of clips")
    if not entries:
        raise DataError(f"manifest {path} is an empty list: no clip", "re-create it (mlbench data prepare whisper)")
    fmt = ("the reference's format: {'transcript': ..., 'files': [{'fname', 'duration', 'num_samples', ...}]}; "
           "fix the entry or re-create the manifest (mlbench data prepare whisper)")
    clips = []
    for i, e in enumerate(entries):
        where = f"{path.name} entry {i}"
        if not isinstance(e, dict) or not isinstance(e.get("files"), list) or not e["files"] \
                or not isinstance(e["files"][-1], dict):
            raise DataError(f"{where}: needs 'transcript' and a non-empty 'files' list", fmt)
        if not isinstance(e.get("transcript"), str):
            raise DataError(f"{where}: 'transcript' is missing or not text", fmt)
        f = e["files"][-1]
        missing = [k for k in ("fname", "num_samples") if k not in f]
        if missing or not isinstance(f["fname"], str):
            raise DataError(f"{where}: files[] lacks {', '.join(missing) or 'a text fname'}", fmt)
        n = f["num_samples"]
        if not finite_number(n) or n <= 0 or n != int(n):
            raise DataError(f"{where}: num_samples {str(n)[:30]!r} is not a positive whole number", fmt)
        duration = n / audio_io.SAMPLE_RATE
        if duration > max_clip_s:
            raise DataError(f"{where}: the clip lasts {duration:.1f} s, longer than the model's {max_clip_s:g} s "
                            "window", "drop the entry, or cut the audio into clips of at most "
                            f"{max_clip_s:g} s (mlbench data prepare whisper packs them so)")
        bad = outside_labels(e["transcript"])
        if bad:
            raise DataError(f"{where}: transcript {e['transcript'][:50]!r} has characters outside the scored "
                            f"labels: {bad!r}", "transcripts hold letters, digits, spaces and ' $ % + - only "
                            "(the reference's 42 labels); fix the transcript")
        name = f["fname"]
        if os.path.isabs(name):  # the reference's own output names the folder its container wrote
            name = f"{CLIPS}/{Path(name).name}"
        wav = inside(root, name, where, what="fname",
                     hint=f"an fname is a path relative to the data directory (e.g. {CLIPS}/1272-128104_0.wav)")
        clips.append(Clip(wav, duration, int(n), " ".join(e["transcript"].lower().split())))
    return clips


def check_files(clips: list[Clip], max_clip_s: float = MAX_CLIP_S) -> None:
    """Every clip's WAV header, before anything runs: missing, not audio, another sample rate, several channels,
    empty or longer than the window: DataError naming the file and the fix (the samples are read at load time)."""
    if not audio_io.have_soundfile():
        return  # read_wav checks each file as it reads it
    import soundfile as sf

    rate = audio_io.SAMPLE_RATE
    for c in clips:
        if not c.path.is_file():
            raise DataError(f"audio file not found: {c.path}", "check the manifest's files[].fname and --data-dir")
        try:
            info = sf.info(str(c.path))
        except Exception as exc:  # noqa: BLE001 - libsndfile's errors for files that are not audio
            raise DataError(f"cannot read audio file {c.path}: {' '.join(str(exc).split())[:160]}",
                            "the file is corrupt or not a WAV; re-create it (mlbench data prepare whisper)") from None
        if info.samplerate != rate:
            raise DataError(f"{c.path}: sample rate {info.samplerate} Hz, Whisper reads {rate} Hz",
                            f"resample it to {rate} Hz 16-bit mono (e.g. sox IN.wav -r {rate} -b 16 -c 1 OUT.wav), "
                            "or build the layout with mlbench data prepare whisper")
        if info.channels != 1:
            raise DataError(f"{c.path}: {info.channels} channels, Whisper reads mono", "convert it to mono")
        if info.frames == 0:
            raise DataError(f"{c.path}: the audio file is empty (0 samples)", "re-create it or drop its manifest entry")
        if info.frames > max_clip_s * rate:
            raise DataError(f"{c.path}: {info.frames / rate:.1f} s of audio, longer than the model's {max_clip_s:g} s "
                            "window", f"cut it into clips of at most {max_clip_s:g} s (mlbench data prepare whisper "
                            "packs LibriSpeech so)")


def read_clip(clip: Clip, window: int) -> np.ndarray:
    """The clip's samples; a file that is not a 16 kHz mono WAV, empty or longer than the model's window (``window``
    samples: the one bound, as read_manifest and check_files apply it before the run): DataError."""
    x = audio_io.read_wav(clip.path)
    if len(x) > window:
        limit = window / audio_io.SAMPLE_RATE
        raise DataError(f"{clip.path}: {len(x) / audio_io.SAMPLE_RATE:.1f} s of audio, longer than the model's "
                        f"{limit:g} s window", f"cut it into clips of at most {limit:g} s (mlbench data prepare "
                        "whisper packs LibriSpeech so)")
    return x


def write_set(root: str | Path, clips: Iterable[tuple[str, np.ndarray, str]]) -> Path:
    """``clips`` (file stem, samples, transcript) written in the reference's layout under ``root`` (one at a time:
    an iterator holds one clip in memory)."""
    root = Path(root)
    (root / CLIPS).mkdir(parents=True, exist_ok=True)
    entries = []
    for stem, x, text in clips:
        rel = f"{CLIPS}/{stem}.wav"
        audio_io.write_wav(root / rel, x)
        entries.append(manifest_entry(rel, len(x), text))
    tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, root / MANIFEST)
    return root / MANIFEST


WORDS = ("zero one two three four five six seven eight nine yes no up down left right stop go on off "
         "red green blue open close start").split()


def tone_set(root: str | Path, n: int, seed: int = 0, max_s: float = 1.5) -> Path:
    """``n`` clips of tone chords (one per word) with random transcripts: tiny's data, for tests and throughput."""
    rng = np.random.default_rng(seed)
    sr = audio_io.SAMPLE_RATE
    clips = []
    for k in range(n):
        words = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), rng.integers(1, 4))]
        parts = []
        for w in words:
            t = np.arange(int(sr * min(max_s / len(words), 0.2 + 0.05 * len(w)))) / sr
            f = 200 + 40 * (sum(map(ord, w)) % 20)
            parts.append(0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(len(t)))
        clips.append((f"{1000 + k}-{k % 3}_{k}", np.concatenate(parts).astype(np.float32), " ".join(words)))
    return write_set(root, clips)
