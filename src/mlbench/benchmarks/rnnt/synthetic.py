"""Speech data for the mini and tiny sizes, written in the reference's format (WAV + manifests).

mini: utterances of 1-3 words from a closed vocabulary (digits, letters, commands), synthesised offline by
Debian's ``espeak-ng`` (several accents, voice variants, speeds and pitches) and ``flite`` (several voices,
speeds, pitches), resampled to 16 kHz, with leading/trailing silence and noise at 15-35 dB SNR. The
evaluation set uses held-out voices and variants (espeak-ng's New York and West Midlands accents, variants
never used for training, flite's ``slt``), so the WER measures generalisation to unseen speakers, not memory.

tiny: no speech engine, for fast tests: each character is a short chord of two tones proper to it, words are
separated by silence, with noise; the same manifests and WAV files.

Both are written once into a directory (``cache_dir('rnnt-<size>')`` unless ``--data-dir`` is given) and read
back by the same loader as LibriSpeech.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlbench.data import folders
from mlbench.errors import MlbenchError
from mlbench.speech import audio as audio_io
from mlbench.speech.librispeech import manifest_entry

DIGITS = "zero one two three four five six seven eight nine".split()
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
COMMANDS = ("yes no up down left right on off stop go forward back follow open close start play next home "
            "call").split()
VOCABULARY = DIGITS + LETTERS + COMMANDS

ESPEAK_TRAIN = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan"]
# Training speakers: espeak-ng's numbered variants except the held-out ones, plus its named variants (each a
# different voice: formants, breathiness, tone), and no variant; pitch and speed drawn over wide ranges.
ESPEAK_TRAIN_VARIANTS = ["", "m1", "m3", "m5", "m6", "m7", "m8", "f1", "f3", "f5", "adam", "Alex", "Andy", "Annie",
                         "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward",
                         "Gene", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "Jacky", "john",
                         "kaukovalta", "Lee", "linda", "marcelo", "Marco", "max", "Michael", "michel", "miguel",
                         "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob", "robert", "steph", "steph2",
                         "zac", "anika", "grandpa", "grandma", "norbert", "sandro", "shelby", "travis", "victor",
                         "klatt", "klatt2", "klatt3"]
ESPEAK_TEST = ["en-us-nyc", "en-gb-x-gbcwmd"]
ESPEAK_TEST_VARIANTS = ["m2", "m4", "f2", "f4"]  # never used for training
FLITE_TRAIN = ["awb", "rms", "kal16", "kal"]
FLITE_TEST = ["slt"]
# the generator's version: part of the cache marker, so that data written by an older generator is regenerated
SPEECH_VERSION = 2

TINY_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
TINY_LETTERS = 4  # tiny's words use the first four letters


def speech_tools_missing() -> list[str]:
    return [t for t in ("espeak-ng", "flite") if shutil.which(t) is None]


def _finish(x: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float]) -> np.ndarray:
    """Silence before and after, peak-normalised, noise at a random SNR."""
    x = x.astype(np.float32)
    x = x / (np.abs(x).max() + 1e-6) * rng.uniform(0.3, 0.9)
    pad = rng.integers(800, 4800, 2)
    x = np.concatenate([np.zeros(pad[0], np.float32), x, np.zeros(pad[1], np.float32)])
    power = float(np.mean(x ** 2)) + 1e-12
    snr = rng.uniform(*snr_db)
    return (x + rng.standard_normal(len(x)).astype(np.float32) * np.sqrt(power / 10 ** (snr / 10))).astype(np.float32)


def _read_any_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    return audio_io.resample(np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0, rate)


def _espeak(text: str, voice: str, variant: str, speed: int, pitch: int, out: Path) -> np.ndarray:
    v = f"{voice}+{variant}" if variant else voice
    subprocess.run(["espeak-ng", "-v", v, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
                   check=True, capture_output=True, timeout=60)
    return _read_any_wav(out)


def _flite(text: str, voice: str, stretch: float, f0: int, out: Path) -> np.ndarray:
    subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.2f}", "--setf",
                    f"int_f0_target_mean={f0}", "-t", text, "-o", str(out)], check=True, capture_output=True,
                   timeout=60)
    return _read_any_wav(out)


@dataclass(frozen=True)
class _Voices:
    """Who speaks a split, and the ranges each utterance's voice is drawn from."""
    espeak: tuple[str, ...]
    variants: tuple[str, ...]
    speed: tuple[int, int]  # espeak-ng words per minute
    pitch: tuple[int, int]  # espeak-ng 0-99
    flite: tuple[str, ...]
    stretch: tuple[float, float]  # flite duration stretch
    f0: tuple[int, int]  # flite mean pitch (Hz)
    snr_db: tuple[float, float]


# held-out voices and variants (the same draws as version 1: the same test set); many training speakers with
# wider pitch and speed ranges and more noise
_SPLIT_VOICES = {
    "dev": _Voices(tuple(ESPEAK_TEST), tuple(ESPEAK_TEST_VARIANTS), (120, 200), (25, 80), tuple(FLITE_TEST),
                   (0.8, 1.3), (85, 180), (15.0, 35.0)),
    "train": _Voices(tuple(ESPEAK_TRAIN), tuple(ESPEAK_TRAIN_VARIANTS), (100, 230), (0, 100), tuple(FLITE_TRAIN),
                     (0.75, 1.4), (70, 220), (8.0, 35.0)),
}


def speech_draw(i: int, split: str, seed: int) -> tuple[np.random.Generator, str, tuple]:
    """Utterance ``i`` of ``split``: its generator (left where the audio's finishing draws start), its text and
    its voice: ``("espeak-ng", accent, variant, speed, pitch)`` or ``("flite", voice, stretch, f0)``."""
    rng = np.random.default_rng([seed, i, 0 if split == "train" else 1])
    words = [VOCABULARY[k] for k in rng.integers(0, len(VOCABULARY), rng.integers(1, 4))]
    v = _SPLIT_VOICES["train" if split == "train" else "dev"]
    if rng.random() < 0.75:
        voice: tuple = ("espeak-ng", str(rng.choice(v.espeak)), str(rng.choice(v.variants)),
                        int(rng.integers(*v.speed)), int(rng.integers(*v.pitch)))
    else:
        voice = ("flite", str(rng.choice(v.flite)), float(rng.uniform(*v.stretch)), int(rng.integers(*v.f0)))
    return rng, " ".join(words), voice


def _speech_job(i: int, split: str, seed: int, tmp: Path) -> tuple[np.ndarray, str]:
    rng, text, voice = speech_draw(i, split, seed)
    out = tmp / f"{split}-{i}.wav"
    x = _espeak(text, *voice[1:], out) if voice[0] == "espeak-ng" else _flite(text, *voice[1:], out)
    out.unlink(missing_ok=True)
    return _finish(x, rng, _SPLIT_VOICES["train" if split == "train" else "dev"].snr_db), text


def _tone_job(i: int, split: str, seed: int) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng([seed, i, 0 if split == "train" else 1])
    alphabet = TINY_ALPHABET[:TINY_LETTERS]
    words = ["".join(rng.choice(list(alphabet), rng.integers(1, 3))) for _ in range(rng.integers(1, 3))]
    sr = audio_io.SAMPLE_RATE
    parts = []
    for w_i, word in enumerate(words):
        if w_i:
            parts.append(np.zeros(int(sr * rng.uniform(0.08, 0.14)), np.float32))
        for ch in word:
            k = alphabet.index(ch)
            n = int(sr * rng.uniform(0.14, 0.2))
            t = np.arange(n) / sr
            f1, f2 = 300 + 250 * k, 1800 + 300 * (TINY_LETTERS - 1 - k)
            env = np.hanning(n)
            parts.append((env * (np.sin(2 * np.pi * f1 * t) + 0.6 * np.sin(2 * np.pi * f2 * t))).astype(np.float32))
            parts.append(np.zeros(int(sr * 0.02), np.float32))
    return _finish(np.concatenate(parts), rng, (25.0, 35.0)), " ".join(words)


def generate(root: str | Path, kind: str, train: int, eval_: int, seed: int = 0, workers: int = 2,
             say=print, hint: str | None = None) -> Path:
    """Write ``root/{train,dev}-wav/*.wav`` and ``root/librispeech-{train,dev}-wav.json``; a directory that
    already holds both manifests (the ``complete`` marker) is reused. ``root`` must be new, empty or made by
    mlbench (:mod:`mlbench.data.folders`; ``hint`` is the fix when it is not): another folder is refused, its
    files left as they are."""
    root = Path(root)
    version = f"-v{SPEECH_VERSION}" if kind == "speech" else ""
    marker = root / f".complete-{kind}{version}-{train}-{eval_}-{seed}"
    if _complete(root, marker, train, eval_):
        return root
    if kind == "speech":
        missing = speech_tools_missing()
        if missing:
            raise MlbenchError(f"the mini speech data is synthesised with espeak-ng and flite; missing: "
                               f"{', '.join(missing)}", "apt-get install espeak-ng flite (make setup does)")
    # One writer at a time: two runs generating into the same cache at once would interleave their files.
    with folders.writing(root, f"generated {kind} speech data", hint=hint, say=say):
        if _complete(root, marker, train, eval_):  # the other process finished it
            return root
        for other in root.glob(".complete-*"):  # the files below replace whatever another setting wrote
            other.unlink()
        _write(root, kind, train, eval_, seed, workers, say)
        marker.write_text("ok\n")
    return root


def _complete(root: Path, marker: Path, train: int, eval_: int) -> bool:
    """The marker is there and the manifests hold as many utterances as it says (one directory serves one
    setting at a time: another setting's generation rewrites the manifests)."""
    if not marker.is_file():
        return False
    try:
        return all(len(json.loads((root / f"librispeech-{split}-wav.json").read_text())) == n
                   for split, n in (("train", train), ("dev", eval_)))
    except (OSError, ValueError, TypeError, RecursionError):
        return False


def _write(root: Path, kind: str, train: int, eval_: int, seed: int, workers: int, say) -> None:
    say(f"generating {kind} data: {train} training and {eval_} evaluation utterances in {root}")
    with tempfile.TemporaryDirectory(prefix="mlbench-rnnt-") as tmp:
        for split, n in (("train", train), ("dev", eval_)):
            folder = root / f"{split}-wav"
            folder.mkdir(exist_ok=True)

            def job(i: int, split=split, folder=folder) -> dict:
                x, text = (_speech_job(i, split, seed, Path(tmp)) if kind == "speech" else _tone_job(i, split, seed))
                fname = f"{split}-wav/{split}-{i:05d}.wav"
                audio_io.write_wav(root / fname, x)
                return manifest_entry(fname, len(x), text)

            with ThreadPoolExecutor(max(1, workers)) as pool:
                entries = list(pool.map(job, range(n)))
            tmp_manifest = root / f".librispeech-{split}-wav.json.{os.getpid()}"
            tmp_manifest.write_text(json.dumps(entries, indent=1))
            os.replace(tmp_manifest, root / f"librispeech-{split}-wav.json")
