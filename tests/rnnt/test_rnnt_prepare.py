"""`mlbench data prepare rnnt` against a local HTTP server holding tiny LibriSpeech archives (real layout:
FLAC + trans.txt in tar.gz): verified, converted to WAV + reference manifests, resumable, hostile archives
refused."""

from __future__ import annotations

import pytest
from rnnt_helpers import Server, librispeech_archive, md5, read_manifest

from mlbench.benchmarks.rnnt import data, prepare
from mlbench.benchmarks.rnnt.text import Tokenizer
from mlbench.errors import DataError
from mlbench.speech import audio

pytest.importorskip("soundfile")

UTTS = {"19-198-0001": "HELLO WORLD", "19-198-0002": "IT'S A TEST", "26-495-0000": "GO LEFT"}


@pytest.fixture
def served(tmp_path, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    blob = librispeech_archive("dev-clean", UTTS)
    (www / "dev-clean.tar.gz").write_bytes(blob)
    monkeypatch.setitem(prepare.ARCHIVES, "dev-clean", (md5(blob), len(blob)))
    with Server(www) as server:
        yield server, www


def test_prepare_downloads_verifies_converts_and_resumes(served, tmp_path):
    server, _ = served
    root = tmp_path / "LibriSpeech"
    cfg = prepare.PrepareConfig(root=str(root), splits="dev-clean", base_url=server.url)
    written = prepare.prepare(cfg, say=lambda m: None)
    manifest = root / "librispeech-dev-clean-wav.json"
    assert written == [manifest]
    entries = read_manifest(manifest)
    assert [e["transcript"] for e in entries] == ["hello world", "it's a test", "go left"]
    f = entries[0]["files"][0]
    assert f["fname"] == "dev-clean-wav/19/198/19-198-0001.wav" and f["num_samples"] == 4800
    assert len(audio.read_wav(root / f["fname"])) == 4800
    utts = data.read_manifest(manifest, root, Tokenizer())  # the training loader reads it
    assert len(utts) == 3
    # run again: the verified archive is not fetched again
    n = len(server.requests)
    prepare.prepare(cfg, say=lambda m: None)
    assert len(server.requests) == n


def test_a_corrupt_download_is_refused(served, tmp_path, monkeypatch):
    server, _ = served
    monkeypatch.setitem(prepare.ARCHIVES, "dev-clean", ("0" * 32, None))
    cfg = prepare.PrepareConfig(root=str(tmp_path / "r"), splits="dev-clean", base_url=server.url, retries=1)
    with pytest.raises(DataError, match="md5"):
        prepare.prepare(cfg, say=lambda m: None)
    assert not (tmp_path / "r" / "archives" / "dev-clean.tar.gz").exists()


def test_an_archive_with_members_outside_its_split_is_refused(tmp_path, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    blob = librispeech_archive("dev-clean", UTTS, extra_member="../evil.txt")
    (www / "dev-clean.tar.gz").write_bytes(blob)
    monkeypatch.setitem(prepare.ARCHIVES, "dev-clean", (md5(blob), None))
    with Server(www) as server:
        cfg = prepare.PrepareConfig(root=str(tmp_path / "r"), splits="dev-clean", base_url=server.url)
        with pytest.raises(DataError, match="unexpected member"):
            prepare.prepare(cfg, say=lambda m: None)
    assert not (tmp_path / "evil.txt").exists()


def test_sentencepiece_model_is_trained_on_the_training_transcripts(tmp_path, monkeypatch):
    pytest.importorskip("sentencepiece")
    www = tmp_path / "www"
    www.mkdir()
    words = "the quick brown fox jumps over a lazy dog while seven cats watch from the garden wall".split()
    utts = {f"19-198-{i:04d}": " ".join(words[i % 7: i % 7 + 6]) for i in range(40)}
    blob = librispeech_archive("train-clean-100", utts)
    (www / "train-clean-100.tar.gz").write_bytes(blob)
    monkeypatch.setitem(prepare.ARCHIVES, "train-clean-100", (md5(blob), None))
    with Server(www) as server:
        cfg = prepare.PrepareConfig(root=str(tmp_path / "r"), splits="train-clean-100", base_url=server.url,
                                    vocab_size=30)
        written = prepare.prepare(cfg, say=lambda m: None)
    model = written[-1]
    assert model.name == "librispeech30.model" and model.is_file()
    tok = Tokenizer(model)
    assert tok.num_labels == 30 and tok.decode(tok.encode("the lazy dog")) == "the lazy dog"
