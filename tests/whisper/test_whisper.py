"""Whisper inference: the reference's text scoring, the features, the clip layout, and `mlbench infer whisper` under
LoadGen (tiny: random weights; the model-directory path with a tiny Hugging Face directory written here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlbench.benchmarks.whisper import data as wdata
from mlbench.benchmarks.whisper import model as wmodel
from mlbench.benchmarks.whisper import text

TINY = {"d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "n_mels": 80, "source_positions": 100,
        "target_positions": 24}


@pytest.fixture(scope="module")
def runner():
    tok = wmodel.char_tokenizer()
    return wmodel.WhisperRunner(wmodel.build(TINY, tok, seed=0), tok, max_new_tokens=8)


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("whisper-tones")
    wdata.tone_set(root, 6, seed=1)
    return root


# ---------------------------------------------------------------- text


def test_labels_keep_what_the_reference_keeps():
    ids = text.to_labels("  Hello, World! It's 25% - $3+ é ")
    assert text.from_labels(ids) == "hello world it's 25% - $3+ "  # stripped before the é is dropped
    assert text.outside_labels("Naïve café, ok") == "ïé,"


@pytest.mark.parametrize("raw", [
    "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS", "Twenty five men came in nineteen ten",
    "one hundred and three", "I won't go, Mr. Smith [noise] um", "one of them and one", "it's the dog's",
    "they'll say we've been there", "he said (quietly) hello", "fifty six thousand"])
def test_normaliser_agrees_with_the_references_on_these(raw):
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    assert text.normalize(raw) == EnglishTextNormalizer({})(raw)  # the oracle: the reference's rules (no spellings)


def test_wer_agrees_with_rnnt_and_jiwer_where_no_words_run_together():
    import jiwer

    from mlbench.benchmarks.rnnt.text import word_errors as rnnt_word_errors

    pairs = [("the cat sat on the mat", "the cat sat on a mat"), ("a b c", "x y"), ("", "one word"),
             ("hello there world", "hello world"), ("same words here", "same words here")]
    for hyp, ref in pairs:
        assert text.word_errors(hyp, ref, normalise=False) == rnnt_word_errors(hyp, ref)
    refs, hyps = [r for _, r in pairs if r], [h for h, r in pairs if r]
    assert text.wer(hyps, refs) == pytest.approx(jiwer.wer(refs, hyps))


def test_words_run_together_count_once():
    assert text.word_errors("a notebook here", "a note book here") == (0, 4)
    assert text.word_errors("a note book here", "a notebook here") == (0, 3)
    assert text.word_errors("any thing else", "anything else") == (0, 2)


# ---------------------------------------------------------------- features and model


def test_log_mel_matches_the_feature_extractor(runner):
    import torch
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    x = np.zeros((2, runner.chunk_samples), np.float32)
    x[0, :9000] = 0.2 * rng.standard_normal(9000)
    x[1, :20000] = 0.3 * np.sin(np.arange(20000) / 7)
    fe = WhisperFeatureExtractor(feature_size=80, chunk_length=2)
    want = fe(list(x), sampling_rate=16000, return_tensors="np").input_features
    got = runner.features(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (2, 80, 200)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_outputs_are_fixed_width_with_counts(runner):
    import torch

    ids, counts = runner(torch.zeros(3, runner.chunk_samples))
    assert ids.shape == (3, 8) and counts.shape == (3,)
    assert ((counts >= 1) & (counts <= 8)).all()
    for row, n in zip(ids.tolist(), counts.tolist()):  # ids up to the end token, then -1
        assert all(i >= 0 for i in row[: n - 1]) and all(i == -1 for i in row[n:])


def test_model_directory_round_trip(runner, tmp_path):
    import torch

    d = wmodel.save_dir(runner, tmp_path / "m")
    back = wmodel.load_dir(d, max_new_tokens=8)
    x = torch.zeros(1, runner.chunk_samples)
    x[0, :4000] = 0.1
    assert torch.equal(back(x)[0], runner(x)[0])
    assert back.prompt == runner.prompt and back.chunk_samples == runner.chunk_samples


# ---------------------------------------------------------------- data layout


def test_manifest_in_the_reference_format(tones):
    entries = json.loads((tones / wdata.MANIFEST).read_text())
    f = entries[0]["files"][0]
    assert set(f) >= {"fname", "sample_rate", "duration", "num_samples", "channels", "bitdepth", "speed"}
    assert f["fname"].startswith("dev-all-repack/") and entries[0]["original_num_samples"] == f["num_samples"]
    clips = wdata.read_manifest(tones)
    assert len(clips) == 6 and clips[0].path.is_file()
    assert len(wdata.read_clip(clips[0], 30 * 16000)) == clips[0].num_samples


def test_reference_absolute_fnames_are_read_under_the_data_dir(tones, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(tones, root)
    entries = json.loads((root / wdata.MANIFEST).read_text())
    for e in entries:  # what the reference's container wrote
        e["files"][0]["fname"] = "/data/dev-all-repack/" + Path(e["files"][0]["fname"]).name
    (root / wdata.MANIFEST).write_text(json.dumps(entries))
    assert wdata.read_manifest(root)[0].path == root / "dev-all-repack" / Path(entries[0]["files"][0]["fname"]).name


# ---------------------------------------------------------------- mlbench infer whisper


@pytest.fixture
def infer(tmp_path, capsys, monkeypatch):
    from mlbench.cli import main

    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def run(*args: str) -> tuple[int, dict | None, str]:
        out = tmp_path / "runs"
        code = main(["infer", "whisper", "--output-dir", str(out), "--threads", "1", *args])
        printed = capsys.readouterr()
        found = sorted(out.glob("*/result.json")) if out.is_dir() else []
        return code, json.loads(found[-1].read_text()) if found else None, printed.out + printed.err

    return run


def test_offline_submission_counts_tokens_and_scores_wer(infer, tones):
    code, r, out = infer("--size", "tiny", "--data-dir", str(tones), "--mode", "submission", "--quick",
                         "--duration-s", "0.2", "--batch-size", "4")
    assert code == 0, out
    m = r["metrics"]
    assert m["scenario_metric"] == "throughput/tokens_per_s" and m["throughput/tokens_per_s"] > 0
    assert m["throughput/tokens_per_s"] == pytest.approx(m["throughput/samples_per_s"] * m["sut/tokens_per_sample"],
                                                         rel=0.2)
    run_dir = Path(r["config"]["output_dir"]) / r["run_id"]
    detail = (run_dir / "performance" / "mlperf_log_detail.txt").read_text()
    assert '"requested_use_token_latencies", "value": true' in detail and "result_tokens_per_second" in detail
    assert r["accuracy"]["metric"] == "wer" and r["accuracy"]["scores"]["samples"] == 6
    logged = json.loads(next(run_dir.rglob("mlperf_log_accuracy.json")).read_text())
    hyps = [text.from_labels(np.frombuffer(bytes.fromhex(e["data"]), np.int64)) for e in logged]
    refs = [wdata.read_manifest(tones)[e["qsl_idx"]].transcript for e in logged]
    assert r["accuracy"]["value"] == pytest.approx(text.wer(hyps, refs))


def test_server_runs_with_the_suts_token_count(infer, tones):
    code, r, out = infer("--size", "tiny", "--data-dir", str(tones), "--scenario", "Server", "--quick",
                         "--duration-s", "0.1", "--target-qps", "500", "--target-latency-ms", "60000")
    assert r is not None and r["status"] == "success", out  # VALID or not (early stopping): measured
    m = r["metrics"]
    assert m["throughput/tokens_per_s"] == pytest.approx(m["throughput/samples_per_s"] * m["sut/tokens_per_sample"])
    assert m["latency/p90_ms"] > 0


def test_reference_size_reads_a_model_directory(infer, tones, runner, tmp_path):
    d = wmodel.save_dir(runner, tmp_path / "hf")
    code, r, out = infer("--size", "reference", "--model-dir", str(d), "--data-dir", str(tones), "--mode",
                         "accuracy", "--max-samples", "3")
    assert r is not None and r["status"] == "success", out  # random weights: below target (exit 1)
    assert r["accuracy"]["scores"]["samples"] == 3 and r["task"]["model"]["dir"] == str(d)


def test_train_says_inference_only_before_making_anything(tmp_path, capsys):
    from mlbench.cli import main

    code = main(["train", "whisper", "--size", "tiny", "--output-dir", str(tmp_path / "runs")])
    assert code == 1 and "inference only" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_mini_lists_no_target_and_no_model_dir_it_would_refuse():
    """whisper --size mini refuses to run (no mini model is trained here): `mlbench list` gives it no accuracy
    target (none is measured; it was RNN-T mini's old 0.62) and does not tell the user to pass --model-dir."""
    from mlbench.cli.list import rows

    mini = next(r for r in rows() if (r["benchmark"], r["size"]) == ("whisper", "mini"))
    assert mini["inference_target"] is None and mini["inference_targets"] == {}
    assert "--model-dir" not in mini["dataset"]
