"""`mlbench data prepare whisper` against a local HTTP server holding tiny LibriSpeech archives (the real layout:
FLAC + trans.txt in tar.gz): RNN-T's verified download and conversion (shared), then the reference's packing into
clips of at most 30 s (here 1.3 s, so that the tiny utterances pack as real ones do)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rnnt"))
from rnnt_helpers import Server, librispeech_archive, md5  # noqa: E402

from mlbench.benchmarks.whisper import data as wdata  # noqa: E402
from mlbench.benchmarks.whisper import prepare  # noqa: E402
from mlbench.speech import librispeech  # noqa: E402

pytest.importorskip("soundfile")

SPLITS = {"dev-clean": {"19-198-0001": "HELLO WORLD", "19-198-0002": "IT'S A TEST", "19-198-0003": "GO LEFT"},
          "dev-other": {"26-495-0000": "TWENTY FIVE MEN"}}


def test_prepare_packs_both_dev_splits_into_the_reference_layout(tmp_path, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    for split, utts in SPLITS.items():
        blob = librispeech_archive(split, utts)
        (www / f"{split}.tar.gz").write_bytes(blob)
        monkeypatch.setitem(librispeech.ARCHIVES, split, (md5(blob), len(blob)))
    monkeypatch.setattr(wdata, "MAX_CLIP_S", 1.3)
    root = tmp_path / "whisper-data"
    with Server(www) as server:
        written = prepare.prepare(prepare.PrepareConfig(root=str(root), base_url=server.url), say=lambda m: None)
    assert written[-1] == root / wdata.MANIFEST
    entries = json.loads(written[-1].read_text())
    # 19-198: 0.3 s + 0.5 s gap + 0.4 s fit in 1.3 s, the 0.5 s third starts a clip; 26-495: one clip
    assert [e["transcript"] for e in entries] == ["hello world it's a test", "go left", "twenty five men"]
    assert [e["files"][0]["fname"] for e in entries] == ["dev-all-repack/19-198_0.wav", "dev-all-repack/19-198_1.wav",
                                                        "dev-all-repack/26-495_0.wav"]
    assert entries[0]["files"][0]["num_samples"] == int((0.3 + 0.5 + 0.4) * 16000)
    clips = wdata.read_manifest(root, max_clip_s=1.3)  # what mlbench infer whisper reads
    assert len(wdata.read_clip(clips[0], 30 * 16000)) == entries[0]["original_num_samples"]
