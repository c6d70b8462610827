"""RNN-T data: the reference's manifest format read back, features and batches, and bad input refused with a
DataError naming the file."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch
from rnnt_helpers import tiny_dataset

from mlbench.benchmarks.rnnt import data, features, synthetic
from mlbench.benchmarks.rnnt.definition import TINY
from mlbench.benchmarks.rnnt.text import Tokenizer, wer
from mlbench.errors import DataError
from mlbench.speech import audio


@pytest.fixture
def ds(tmp_path):
    return tiny_dataset(tmp_path / "ls")


def test_generated_data_is_in_the_reference_format_and_batches(ds):
    entries = json.loads((ds / "librispeech-train-wav.json").read_text())
    f = entries[0]["files"][0]
    assert {"fname", "duration", "num_samples", "sample_rate", "channels"} <= set(f) and "transcript" in entries[0]
    assert len(audio.read_wav(ds / f["fname"])) == f["num_samples"]
    utts = data.read_manifest(ds / "librispeech-train-wav.json", ds, Tokenizer())
    b = data.SpeechBatches(utts, 8, train=True, rank=0, world=1, seed=0, hp=TINY.hparams)
    batch = next(iter(b))
    assert batch["feats"].shape[0] == 8 and batch["feats"].shape[2] == 240
    assert int(batch["feat_lens"].max()) == batch["feats"].shape[1]
    assert batch["tokens"].shape[1] == int(batch["token_lens"].max())
    ev = data.SpeechBatches(utts, 5, train=False, rank=0, world=1, seed=0, hp=TINY.hparams)
    assert sum(len(x["feat_lens"]) for x in ev) == len(utts)



def test_speed_perturbation_draws_a_new_rate_every_epoch_even_with_the_feature_cache(ds):
    utts = data.read_manifest(ds / "librispeech-train-wav.json", ds, Tokenizer())[:4]
    hp = {**TINY.hparams, "speed": True, "cache_features": True}
    b = data.SpeechBatches(utts, 4, train=True, rank=0, world=1, seed=0, hp=hp, cache=True)
    lens = []
    for epoch in range(3):
        b.set_epoch(epoch)
        lens.append(sorted(int(n) for x in b for n in x["feat_lens"]))
    assert lens[0] != lens[1] or lens[1] != lens[2]  # a cached first draw would repeat every epoch
    assert not b._mel  # training features under speed perturbation are not kept
    ev = data.SpeechBatches(utts, 4, train=False, rank=0, world=1, seed=0, hp=hp, cache=True)
    list(ev)
    assert len(ev._mel) == len(utts)  # evaluation (no perturbation) still caches

@pytest.mark.parametrize("speed", [False, True], ids=["cached", "speed-perturbed"])
def test_worker_processes_make_the_same_batches_and_fill_the_cache_here(ds, speed):
    """mini speed-perturbs in training: the rate drawn in a worker process is the one this process would draw."""
    utts = data.read_manifest(ds / "librispeech-train-wav.json", ds, Tokenizer())
    hp = {**TINY.hparams, "time_masks": 2, "time_stretch": 0.1, "freq_warp": 0.1, "speed": speed}
    seen = {}
    for workers in (0, 2):
        b = data.SpeechBatches(utts, 8, train=True, rank=0, world=1, seed=3, hp=hp, cache=True, workers=workers)
        epochs = []
        for epoch in range(2):
            b.set_epoch(epoch)
            epochs.append(list(b))
            if not speed:
                assert len(b._mel) >= 8 * len(epochs[-1])  # the features came back from the workers
        seen[workers] = epochs
    for e0, e2 in zip(seen[0], seen[2], strict=True):
        for x, y in zip(e0, e2, strict=True):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(seen[0][0][0]["feats"], seen[0][1][0]["feats"])  # a new draw each epoch


def test_warp_stretches_time_and_warps_frequency():
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(80, 100)
    lens = {features.warp(mel, g, time_stretch=0.15).shape[1] for _ in range(20)}
    assert min(lens) >= 100 / 1.15 - 1 and max(lens) <= 100 / 0.85 + 1 and len(lens) > 3
    w = features.warp(mel, g, freq_warp=0.1)
    assert w.shape == mel.shape and not torch.equal(w, mel) and torch.isfinite(w).all()
    assert torch.equal(features.warp(mel, g), mel)


def test_mel_filterbank_matches_librosa_slaney_shape():
    fb = features.mel_filterbank(16000, 512, 80)
    assert fb.shape == (80, 257) and (fb >= 0).all() and (fb.sum(1) > 0).all()
    x, lens = features.stack_subsample(torch.arange(20.0).reshape(1, 2, 10), torch.tensor([10]), 3, 3)
    assert x.shape == (1, 6, 4) and int(lens[0]) == 4 and x[0, 2, 0] == 1 and x[0, 4, 1] == 5


def test_wer_and_tokenizer():
    assert wer(["a b c", ""], ["a x c", "d e"]) == pytest.approx(3 / 5)
    tok = Tokenizer()
    assert tok.decode(tok.encode("it's go")) == "it's go" and tok.blank == 28


def bad(ds, mutate):
    m = ds / "librispeech-dev-wav.json"
    original = m.read_text()
    entries = json.loads(original)
    mutate(entries)
    m.write_text(json.dumps(entries))
    try:
        with pytest.raises(DataError) as err:
            data.read_manifest(m, ds, Tokenizer())
    finally:
        m.write_text(original)
    return err.value.message


def test_bad_manifests_are_refused_with_the_entry(ds):
    assert "lacks num_samples" in bad(ds, lambda e: e[1]["files"][0].pop("num_samples"))
    assert "entry 0" in bad(ds, lambda e: e[0].pop("transcript"))
    assert "outside the tokenizer" in bad(ds, lambda e: e[2].update(transcript="héllo 42"))
    assert "not found" in bad(ds, lambda e: e[0]["files"][0].update(fname="dev-wav/none.wav"))
    assert "climbs out" in bad(ds, lambda e: e[0]["files"][0].update(fname="../../etc/passwd"))


def test_bad_audio_is_refused_with_the_file(ds, tmp_path):
    wav = sorted((ds / "dev-wav").glob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes()[:30])
    with pytest.raises(DataError, match=wav.name):
        audio.read_wav(wav)
    other = tmp_path / "8k.wav"
    audio.write_wav(other, torch.zeros(800).numpy(), rate=8000)
    with pytest.raises(DataError, match="8000 Hz"):
        audio.read_wav(other)
    empty = tmp_path / "empty.wav"
    audio.write_wav(empty, torch.zeros(0).numpy())
    with pytest.raises(DataError, match="empty"):
        audio.read_wav(empty)


@pytest.mark.slow
@pytest.mark.skipif(bool(synthetic.speech_tools_missing()), reason="espeak-ng/flite not installed")
def test_speech_synthesis_with_espeak_and_flite(tmp_path):
    root = synthetic.generate(tmp_path / "sp", "speech", 12, 6, seed=0, say=lambda m: None)
    utts = data.read_manifest(root / "librispeech-dev-wav.json", root, Tokenizer())
    assert len(utts) == 6 and all(set(u.transcript.split()) <= set(synthetic.VOCABULARY) for u in utts)
    assert all(0.3 < len(audio.read_wav(u.path)) / 16000 < 6 for u in utts)
    shutil.rmtree(root)


def test_held_out_voices_are_never_used_for_training():
    assert not set(synthetic.ESPEAK_TEST) & set(synthetic.ESPEAK_TRAIN)
    assert not set(synthetic.ESPEAK_TEST_VARIANTS) & set(synthetic.ESPEAK_TRAIN_VARIANTS)
    assert not set(synthetic.FLITE_TEST) & set(synthetic.FLITE_TRAIN)


@pytest.mark.skipif(bool(synthetic.speech_tools_missing()), reason="espeak-ng/flite not installed")
def test_every_espeak_variant_exists(tmp_path):
    """espeak-ng falls back to its default voice, silently, for a variant it does not know."""
    def speak(voice: str) -> bytes:
        out = tmp_path / "v.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), "stop"], check=True, capture_output=True)
        return out.read_bytes()

    default = speak("en-us")
    for v in [v for v in synthetic.ESPEAK_TRAIN_VARIANTS + synthetic.ESPEAK_TEST_VARIANTS if v]:
        assert speak(f"en-us+{v}") != default, v


def test_concurrent_generation_into_one_cache_writes_once(tmp_path):
    """Two runs generating the same data at once: the second waits for the first and reuses its files."""
    import threading

    calls, said = [], []
    real = synthetic._write

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    synthetic._write = counted
    try:
        ts = [threading.Thread(target=synthetic.generate, args=(tmp_path / "d", "tone", 24, 8),
                               kwargs=dict(seed=0, say=said.append)) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        synthetic._write = real
    assert len(calls) == 1
    entries = json.loads((tmp_path / "d" / "librispeech-train-wav.json").read_text())
    assert len(entries) == 24 and all((tmp_path / "d" / e["files"][0]["fname"]).is_file() for e in entries)


def test_cache_regenerates_when_another_setting_rewrote_it(tmp_path):
    """One cache directory, two settings one after the other: the first one's marker must not vouch for the
    second one's files."""
    root = tmp_path / "d"
    synthetic.generate(root, "tone", 24, 8, seed=0, say=lambda m: None)
    synthetic.generate(root, "tone", 12, 8, seed=0, say=lambda m: None)
    synthetic.generate(root, "tone", 24, 8, seed=0, say=lambda m: None)
    assert len(json.loads((root / "librispeech-train-wav.json").read_text())) == 24
    assert [p.name for p in root.glob(".complete-*")] == [".complete-tone-24-8-0"]
