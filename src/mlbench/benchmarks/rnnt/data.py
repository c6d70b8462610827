"""LibriSpeech in the RNN-T reference's layout, and batches bucketed by duration.

A manifest (``librispeech-<split>-wav.json``, written by the reference's ``convert_librispeech.py`` and by
``mlbench data prepare rnnt``; also by the mini/tiny generators) is a JSON list of utterances::

    [{"transcript": "...", "original_duration": 14.53, "original_num_samples": 232480,
      "files": [{"fname": "dev-clean-wav/1272/128104/1272-128104-0000.wav", "channels": 1,
                 "sample_rate": 16000.0, "duration": 14.53, "num_samples": 232480, "speed": 1, ...}]}, ...]

``fname`` is relative to the data set directory. Reading checks the file (:func:`mlbench.untrusted.load_json`:
valid JSON, not absurdly nested, a list) and every entry (keys present, durations and sample counts finite and
positive, ``fname`` inside the data set directory, files that exist, transcripts text within the tokenizer's
labels) before anything trains; each problem is a DataError naming the manifest and entry.

Training batches follow the reference's BucketingSampler: utterances sorted by duration into
``num_buckets`` buckets, shuffled within each bucket, cut into batches, the batches shuffled; every rank
takes the same number of batches. Evaluation batches cover the set once across ranks, in manifest order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlbench.benchmarks.rnnt.features import FilterbankFeatures, spec_augment, stack_subsample, warp
from mlbench.benchmarks.rnnt.text import Tokenizer
from mlbench.errors import DataError
from mlbench.finite import finite_number
from mlbench.speech import audio as audio_io
from mlbench.untrusted import inside, load_json

REQUIRED_FILE_KEYS = ("fname", "duration", "num_samples")


MAX_DURATION_S = 24 * 3600  # longer than any utterance (LibriSpeech's are at most 35 s): a damaged entry


@dataclass(frozen=True)
class Utterance:
    path: Path
    duration: float
    num_samples: int
    transcript: str  # normalised
    tokens: tuple[int, ...]


def read_manifest(path: str | Path, root: str | Path, tokenizer: Tokenizer, max_duration: float | None = None,
                  check_files: bool = True) -> list[Utterance]:
    """The utterances of one manifest (those up to ``max_duration`` seconds when given)."""
    p = Path(path)
    hint = "run `mlbench data prepare rnnt --root DIR` and pass --data-dir DIR (it holds librispeech-*-wav.json)"
    entries = load_json(p, "manifest", expect=list, hint=hint if not p.exists() else
                        "re-create it (mlbench data prepare rnnt), or fix it by hand: a JSON list of utterances")
    if not entries:
        raise DataError(f"manifest {p} is an empty list: no utterance", "re-create it (mlbench data prepare rnnt)")
    root = Path(root)
    out = []
    fmt = ("the reference's manifest format: {'transcript': ..., 'files': [{'fname', 'duration', 'num_samples', "
           "...}]}; fix the entry or re-create the manifest")
    for i, e in enumerate(entries):
        where = f"{p.name} entry {i}"
        if not isinstance(e, dict) or "transcript" not in e or not isinstance(e.get("files"), list) or not e["files"]:
            raise DataError(f"{where}: needs 'transcript' and a non-empty 'files' list", fmt)
        if not isinstance(e["transcript"], str):
            raise DataError(f"{where}: 'transcript' is a {type(e['transcript']).__name__}, not text", fmt)
        f = e["files"][-1]  # the reference takes the last file (speed-perturbed copies come first)
        missing = [k for k in REQUIRED_FILE_KEYS if not isinstance(f, dict) or k not in f]
        if missing:
            raise DataError(f"{where}: files[] lacks {', '.join(missing)}", "re-create the manifest")
        wav = inside(root, f["fname"], where, what="fname",
                     hint="an fname is a path relative to the data set directory (e.g. dev-clean-wav/1272/128104/"
                          "1272-128104-0000.wav); fix the entry or re-create the manifest")
        duration, num_samples = f["duration"], f["num_samples"]
        if not finite_number(duration) or not finite_number(num_samples) or num_samples != int(num_samples):
            raise DataError(f"{where}: duration {duration!r} / num_samples {num_samples!r} are not finite numbers "
                            "(seconds, and a whole number of samples)", fmt)
        duration, num_samples = float(duration), int(num_samples)
        if duration <= 0 or num_samples <= 0:
            raise DataError(f"{where}: duration {duration} s / {num_samples} samples: an empty utterance",
                            "drop it from the manifest or re-create the audio")
        if duration > MAX_DURATION_S or num_samples > MAX_DURATION_S * audio_io.SAMPLE_RATE:
            raise DataError(f"{where}: duration {duration:g} s / {num_samples} samples: longer than any speech "
                            f"data set holds (more than {MAX_DURATION_S // 3600} hours)", "fix the entry: the "
                            "duration is in seconds, num_samples counts 16 kHz samples")
        if max_duration is not None and duration > max_duration:
            continue
        if check_files and not wav.is_file():
            raise DataError(f"{where}: audio file not found: {wav}", "check --data-dir and the manifest")
        text = tokenizer.check(e["transcript"], where)
        out.append(Utterance(wav, duration, num_samples, text, tuple(tokenizer.encode(text))))
    if not out:
        raise DataError(f"manifest {p}: no utterance of at most {max_duration} s", "check the manifest")
    return out


def bucket_batches(durations: np.ndarray, batch_size: int, num_buckets: int, rng: np.random.Generator,
                   rank: int, world: int) -> list[np.ndarray]:
    """This rank's training batches of one epoch (see the module docstring)."""
    order = np.argsort(durations, kind="stable")
    batches = []
    for bucket in np.array_split(order, max(1, num_buckets)):
        bucket = rng.permutation(bucket)
        batches += [bucket[s:s + batch_size] for s in range(0, len(bucket) - batch_size + 1, batch_size)]
    if not batches:  # fewer utterances than a batch: one short batch
        batches = [rng.permutation(order)]
    perm = rng.permutation(len(batches))
    per_rank = max(1, len(batches) // world)
    return [batches[j] for j in perm[rank * per_rank:(rank + 1) * per_rank]] if len(batches) >= world else \
        [batches[perm[0]]]


class SpeechBatches:
    """Batches ``{"feats" [B, T, 240], "feat_lens", "tokens" [B, U], "token_lens"}``.

    Audio is read and turned into log-mel features the first time it is needed (after ``run_start``) and kept
    in memory when ``cache`` (mini, tiny) unless training speed-perturbs the waveform; otherwise each epoch reads
    the WAVs again, speed-perturbed when ``speed`` is set (the reference's 0.85-1.15).

    With ``workers`` > 0, batches are made (WAVs read, featurised, augmented, collated) in that many DataLoader
    worker processes, started for each pass and forked from this process, so that they see every feature
    cached so far; the features they compute come back with the batch and join the cache here. Each batch
    draws its augmentation from its own generator (seed, epoch, rank, batch index): the batches do not depend
    on the worker count.
    """

    def __init__(self, utts: list[Utterance], batch_size: int, *, train: bool, rank: int, world: int, seed: int,
                 hp: dict, cache: bool = True, workers: int = 0):
        self.utts, self.batch_size, self.train = utts, batch_size, train
        self.rank, self.world, self.seed, self.hp, self.cache = rank, world, seed, hp, cache
        self.workers = max(0, int(workers))
        self.epoch = 0
        self.durations = np.array([u.duration for u in utts])
        # dither (training only) is added here from a generator of the utterance and epoch, not by the features'
        # global RNG, so that worker processes compute what this process would
        self.dither = hp.get("dither", 1e-5) if train else 0.0
        self.features = FilterbankFeatures(n_mels=hp.get("n_mels", 80), dither=0.0)
        self._mel: dict[int, torch.Tensor] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self) -> list[np.ndarray]:
        if self.train:
            rng = np.random.default_rng(self.seed * 1_000_003 + self.epoch)
            return bucket_batches(self.durations, self.batch_size, self.hp.get("num_buckets", 6), rng,
                                  self.rank, self.world)
        idx = np.arange(len(self.utts))[self.rank::self.world]
        return [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]

    def __len__(self) -> int:
        return len(self._plan())

    def _speed(self) -> bool:
        return self.train and bool(self.hp.get("speed"))

    def mel(self, i: int, g: np.random.Generator | None = None) -> torch.Tensor:
        """Log-mel [n_mels, frames] of utterance ``i`` (speed-perturbed when ``g`` is given: never cached, since
        each epoch draws a new rate)."""
        cache = self.cache and g is None
        if cache and i in self._mel:
            return self._mel[i]
        m = self._compute(i, g)
        if cache:
            self._mel[i] = m
        return m

    def _compute(self, i: int, g: np.random.Generator | None) -> torch.Tensor:
        x = audio_io.read_wav(self.utts[i].path)
        if g is not None:
            lo, hi = self.hp.get("speed_min", 0.85), self.hp.get("speed_max", 1.15)
            rate = float(g.uniform(lo, hi))
            x = audio_io.resample(x, int(round(audio_io.SAMPLE_RATE * rate / 50)) * 50, audio_io.SAMPLE_RATE)
        x = torch.from_numpy(x)
        if self.dither:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]))
            x = x + self.dither * torch.randn(x.shape, generator=g)
        m, n = self.features(x[None], torch.tensor([len(x)]))
        return m[0, :, : int(n[0])].clone()

    def make_batch(self, key: tuple[int, int, tuple[int, ...]]
                   ) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
        """Batch ``b`` of epoch ``epoch`` (``key`` = (epoch, b, utterance indices)) and the features computed
        for it that the cache lacked (to be kept by the caller when caching)."""
        epoch, b, sel = key
        seeds = [self.seed, epoch, self.rank, b]
        speed = np.random.default_rng(seeds + [1]) if self._speed() else None
        mels, new = [], {}
        for i in sel:
            m = self._mel.get(i) if (self.cache and speed is None) else None
            if m is None:
                m = self._compute(i, speed)
                if self.cache and speed is None:
                    new[i] = m
            mels.append(m)
        g = torch.Generator().manual_seed(int(np.random.SeedSequence(seeds).generate_state(1)[0]))
        return self.collate(mels, [self.utts[i].tokens for i in sel], g if self.train else None), new

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        keys = [(self.epoch, b, tuple(int(i) for i in sel)) for b, sel in enumerate(self._plan())]
        if self.workers > 0 and keys:
            from torch.utils.data import DataLoader

            made = DataLoader(_BatchMaker(self), batch_size=None, sampler=keys,
                              num_workers=min(self.workers, len(keys)), prefetch_factor=4)
        else:
            made = map(self.make_batch, keys)
        for batch, new in made:
            self._mel.update(new)
            yield batch

    def collate(self, mels: list[torch.Tensor], tokens: list[tuple[int, ...]], g: torch.Generator | None
                ) -> dict[str, torch.Tensor]:
        hp = self.hp
        if g is not None and (hp.get("time_stretch", 0.0) or hp.get("freq_warp", 0.0)):
            mels = [warp(m, g, hp.get("time_stretch", 0.0), hp.get("freq_warp", 0.0)) for m in mels]
        lens = torch.tensor([m.shape[1] for m in mels])
        x = torch.zeros(len(mels), mels[0].shape[0], int(lens.max()))
        for j, m in enumerate(mels):
            x[j, :, : m.shape[1]] = m
        if g is not None and hp.get("spec_augment", True):
            x = spec_augment(x, lens, g, hp.get("freq_masks", 2), hp.get("max_freq", 20),
                             hp.get("time_masks", 10), hp.get("max_time", 0.03))
        x, lens = stack_subsample(x, lens, hp.get("stacking", 3), hp.get("subsampling", 3))
        tl = torch.tensor([len(t) for t in tokens])
        y = torch.zeros(len(tokens), max(1, int(tl.max())), dtype=torch.long)
        for j, t in enumerate(tokens):
            y[j, : len(t)] = torch.tensor(t, dtype=torch.long)
        return {"feats": x.transpose(1, 2).contiguous(), "feat_lens": lens, "tokens": y, "token_lens": tl}


class _BatchMaker(torch.utils.data.Dataset):
    """The map-style view DataLoader workers call: a batch key -> (batch, new features)."""

    def __init__(self, batches: SpeechBatches):
        self.batches = batches

    def __getitem__(self, key):
        return self.batches.make_batch(key)
