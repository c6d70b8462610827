"""``mlbench infer whisper --backend openai`` (issue 31): each sample's audio posted as a WAV file to a real server's
``/v1/audio/transcriptions``, the returned text scored. Against ``transformers serve`` with a tiny random-weights
Whisper saved here (slow: the server's imports), and against a scripted standard-library server that answers the
right transcript for each file (so the scoring is checked) or misbehaves mid-run (the run INVALID). The hostile
servers that stop a run at its start are in tests/hostile/test_openai_server.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llm_servers import ScriptedTranscriber, TransformersServer
from mlbench import registry
from mlbench.benchmarks.whisper import data as wdata
from mlbench.benchmarks.whisper import model as wmodel
from mlbench.benchmarks.whisper import text
from mlbench.errors import ConfigError, MlbenchError
from mlbench.inference.engines.openai_api import OpenAIEngine, silent_wav
from support import mlbench


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("whisper-tones")
    wdata.tone_set(root, 6, seed=1)
    return root


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny size's random Whisper (its 2 s window) as a Hugging Face folder: what the server serves."""
    hp = registry.get("whisper", "tiny").definition.hparams
    tok = wmodel.char_tokenizer()
    runner = wmodel.WhisperRunner(wmodel.build(hp, tok, seed=0), tok, max_new_tokens=hp["max_new_tokens"])
    return wmodel.save_dir(runner, tmp_path_factory.mktemp("tiny-whisper") / "model")


@pytest.fixture
def infer(tmp_path, capsys, monkeypatch):
    from mlbench.cli import main

    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path / "cache"))

    calls = []

    def run(*args: str) -> tuple[int, dict | None, str]:
        calls.append(args)
        out = tmp_path / f"runs{len(calls)}"  # one folder a run: two runs in one second sort by a random suffix
        code = main(["infer", "whisper", "--size", "tiny", "--backend", "openai", "--output-dir", str(out),
                     "--quick", "--duration-s", "0.2", *args])
        printed = capsys.readouterr()
        found = sorted(out.glob("*/result.json")) if out.is_dir() else []
        return code, json.loads(found[-1].read_text()) if found else None, printed.out + printed.err

    return run


def _answers(tones: Path, spoken: dict[str, str] | None = None) -> dict[bytes, str]:
    """Each clip's WAV file -> its transcript as a server might write it (capitals, punctuation)."""
    return {c.path.read_bytes(): (spoken or {}).get(c.transcript, c.transcript.capitalize() + ".")
            for c in wdata.read_manifest(tones)}


# ---------------------------------------------------------------- the client


def test_client_posts_one_wav_file_a_request_and_reads_the_text(tones):
    files = [c.path.read_bytes() for c in wdata.read_manifest(tones)]
    with ScriptedTranscriber(answers={f: f"text {i}" for i, f in enumerate(files)}) as srv, \
            OpenAIEngine(srv.url + "/v1", "whisper-tiny", api="transcriptions", concurrency=2) as eng:
        assert not eng.counts_tokens  # no tokenizer: the server reports no count, nothing is counted
        done, errors = {}, {}
        for i, f in enumerate(files):
            eng.submit_audio(i, f, on_done=lambda r, c: done.setdefault(r, c),
                             on_error=lambda r, k, m: errors.setdefault(r, (k, m)))
        assert eng.wait(30)
        info = eng.describe()
    assert not errors and {r: c.text for r, c in done.items()} == {i: f"text {i}" for i in range(len(files))}
    assert all(c.token_count == 0 and c.latency_s > 0 for c in done.values())
    assert srv.files[0] == silent_wav(0.5) and sorted(srv.files[1:]) == sorted(files)  # the probe, then each file
    assert all(f == {"model": "whisper-tiny", "response_format": "json"} for f in srv.fields)
    assert info["api"] == "/v1/audio/transcriptions" and info["completed"] == len(files) and info["failed"] == {}
    assert info["token_count_source"].startswith("not available")


def test_client_counts_the_texts_tokens_with_a_tokenizer(tiny_dir):
    with ScriptedTranscriber(answers={silent_wav(0.5): "hello"}) as srv, \
            OpenAIEngine(srv.url, "whisper-tiny", api="transcriptions", tokenizer_dir=str(tiny_dir)) as eng:
        got = []
        eng.submit_audio(0, silent_wav(0.5), on_done=lambda r, c: got.append(c), on_error=pytest.fail)
        assert eng.wait(30)
        assert eng.counts_tokens and "tokenised" in eng.describe()["token_count_source"]
    assert got[0].text == "hello" and got[0].token_count == 5 == len(got[0].token_ids)  # byte-level: a token a letter


@pytest.mark.parametrize(("mode", "kind"), [("500", "http error"), ("html", "malformed answer"),
                                            ("notext", "malformed answer"), ("stall", "timed out"),
                                            ("cut", "truncated")])
def test_client_failures_are_counted_by_kind(mode, kind):
    with ScriptedTranscriber(mode, fail_from=1) as srv, \
            OpenAIEngine(srv.url, "whisper-tiny", api="transcriptions", timeout_s=1.0) as eng:
        errors = []
        eng.submit_audio(0, silent_wav(0.1), on_done=lambda r, c: pytest.fail(f"{mode}: answered {c.text!r}"),
                         on_error=lambda r, k, m: errors.append((k, m)))
        assert eng.wait(30)
        info = eng.describe()
    assert [k for k, _ in errors] == [kind] and info["failed"] == {kind: 1}, errors


def test_a_transcription_requests_repr_holds_no_api_key(monkeypatch):
    """Its headers (the key's Authorization line) are the request's own: printing the request must not show them."""
    monkeypatch.setenv("MLBENCH_T_KEY", "sk-mlbench-repr-5a1")
    eng = OpenAIEngine("http://127.0.0.1:9", "m", api="transcriptions", api_key_env="MLBENCH_T_KEY")
    req = eng._audio_request(0, silent_wav(0.1), None, None)
    assert b"Bearer sk-mlbench-repr-5a1" in req.head and "sk-mlbench-repr-5a1" not in repr(req)


def test_probe_names_an_unknown_model():
    with ScriptedTranscriber() as srv, pytest.raises(MlbenchError, match="refused the request: HTTP 400") as e:
        OpenAIEngine(srv.url, "no-such-model", api="transcriptions").start()
    assert "no-such-model" in str(e.value) and "--api-model" in e.value.hint


# ---------------------------------------------------------------- mlbench infer whisper --backend openai


def test_accuracy_scores_the_returned_text_with_the_references_normaliser(infer, tones):
    """A server that answers each clip's transcript (capitalised, with a full stop): WER 0 after normalisation;
    one that answers a word wrong in one clip: that clip's errors, as the text module counts them."""
    with ScriptedTranscriber(answers=_answers(tones)) as srv:
        code, r, out = infer("--data-dir", str(tones), "--mode", "accuracy", "--endpoint", srv.url,
                             "--api-model", "whisper-tiny")
    assert code == 0 and r["status"] == "success", out
    assert r["accuracy"]["value"] == 0 and r["accuracy"]["scores"]["samples"] == 6
    assert r["backend"]["engine"] == "openai" and r["backend"]["api"] == "/v1/audio/transcriptions"
    clips = wdata.read_manifest(tones)
    assert {c.path.read_bytes() for c in clips} <= set(srv.files)  # each clip sent as the WAV file it is
    wrong = {clips[0].transcript: "Completely different words!"}
    with ScriptedTranscriber(answers=_answers(tones, wrong)) as srv:
        code, r, out = infer("--data-dir", str(tones), "--mode", "accuracy", "--endpoint", srv.url,
                             "--api-model", "whisper-tiny")
    assert r["status"] == "success", out
    errors, words = text.word_errors("completely different words", clips[0].transcript)
    total = sum(text.word_errors(c.transcript, c.transcript)[1] for c in clips)  # normalised ("two one" -> "21")
    assert r["accuracy"]["scores"]["word_errors"] == errors and r["accuracy"]["value"] == pytest.approx(errors / total)
    run_dir = Path(r["run_dir"])
    logged = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    hyps = {e["qsl_idx"]: text.from_labels(np.frombuffer(bytes.fromhex(e["data"]), np.int64)) for e in logged}
    assert hyps[0] == "completely different words"  # the reference's labels of the returned text


def test_performance_without_a_tokenizer_reports_samples_not_tokens(infer, tones):
    with ScriptedTranscriber(answers=_answers(tones)) as srv:
        code, r, out = infer("--data-dir", str(tones), "--endpoint", srv.url, "--api-model", "whisper-tiny",
                             "--concurrency", "3")
    assert r is not None and r["status"] == "success", out  # VALID or not (too short, a fast server): measured
    m = r["metrics"]
    assert m["scenario_metric"] == "throughput/samples_per_s" and m["throughput/samples_per_s"] > 0
    assert "throughput/tokens_per_s" not in m and m["sut/generated_tokens"] is None
    assert m["latency/p50_ms"] > 0 and m["sut/failed_requests"] == 0
    assert r["tests"]["performance"]["tokens_per_s_unavailable"].startswith("not available")
    assert "tokens/s: not available" in out and r["backend"]["concurrency"] == 3
    assert "up to 3 requests in flight" in out and "up to 32" not in out  # --concurrency, not --batch-size's 32
    detail = (Path(r["run_dir"]) / "mlperf_log_detail.txt").read_text()
    assert '"requested_use_token_latencies", "value": true' not in detail  # LoadGen logs it only when on


def test_performance_with_a_tokenizer_reports_tokens_per_s(infer, tones, tiny_dir):
    with ScriptedTranscriber(answers=_answers(tones)) as srv:
        code, r, out = infer("--data-dir", str(tones), "--endpoint", srv.url, "--api-model", "whisper-tiny",
                             "--model-dir", str(tiny_dir))
    assert r is not None and r["status"] == "success", out
    m = r["metrics"]
    # byte-level tokenizer: a token a character of the returned text ("Two one." -> 8)
    per = np.mean([len(c.transcript) + 1 for c in wdata.read_manifest(tones)])
    assert m["scenario_metric"] == "throughput/tokens_per_s"
    assert m["sut/tokens_per_sample"] == pytest.approx(per, rel=0.5)
    assert m["throughput/tokens_per_s"] == pytest.approx(m["throughput/samples_per_s"] * m["sut/tokens_per_sample"],
                                                         rel=0.2)
    assert "tokenised" in r["backend"]["token_count_source"]
    detail = (Path(r["run_dir"]) / "mlperf_log_detail.txt").read_text()  # LoadGen's own tokens/s (Offline)
    assert '"requested_use_token_latencies", "value": true' in detail and "result_tokens_per_second" in detail


def test_requests_failing_mid_run_make_it_invalid(infer, tones):
    with ScriptedTranscriber("flaky", answers=_answers(tones), fail_from=8) as srv:
        code, r, out = infer("--data-dir", str(tones), "--endpoint", srv.url, "--api-model", "whisper-tiny",
                             "--batch-size", "2", "--mode", "submission")
    assert r is not None and r["status"] == "success" and not r["valid"], out
    assert r["backend"]["failed"].get("http error", 0) >= 2
    reasons = [x for x in r["validity_reasons"] if "request(s) failed" in x]
    assert len(reasons) == 2, r["validity_reasons"]  # the performance test's and the accuracy test's
    assert all("http error: HTTP 500" in x and "internal failure" in x for x in reasons)
    assert r["tests"]["accuracy"]["loadgen_valid"] is False


def test_server_backend_options_are_checked(infer, tones, tmp_path):
    code, r, out = infer("--data-dir", str(tones), "--endpoint", "http://127.0.0.1:9")
    assert code == 2 and "--api-model" in out
    code, r, out = infer("--data-dir", str(tones), "--endpoint", "http://127.0.0.1:9", "--api-model", "m",
                         "--model-dir", str(tmp_path))
    assert code != 0 and "no tokenizer.json" in out
    with pytest.raises(ConfigError):
        OpenAIEngine("http://127.0.0.1:9", "m", api="speech")


# ---------------------------------------------------------------- a real server: transformers serve


@pytest.mark.slow
def test_against_transformers_serve(tmp_path, tiny_dir, tones):
    """transformers serve (its /v1/audio/transcriptions needs python-multipart, soundfile and soxr) with the tiny
    random Whisper: the client, then `mlbench infer whisper --backend openai` in performance and accuracy modes."""
    server = TransformersServer(tmp_path / "serve.log")
    try:
        server.wait()
        model = str(tiny_dir)
        server.warm_transcription(model, silent_wav(0.5))
        with pytest.raises(MlbenchError, match="refused the request"):
            OpenAIEngine(server.url, "no-such-model", api="transcriptions").start()
        env = {"MLBENCH_CACHE": str(tmp_path / "cache"), "MLBENCH_E2E_KEY": "sk-mlbench-whisper-77e1"}
        common = ("infer", "whisper", "--size", "tiny", "--backend", "openai", "--endpoint", server.url,
                  "--api-model", model, "--data-dir", str(tones), "--quick", "--duration-s", "0.5",
                  "--concurrency", "2", "--api-key-env", "MLBENCH_E2E_KEY")
        perf = mlbench(*common, "--model-dir", model, "--output-dir", str(tmp_path / "perf"), env=env, timeout=300)
        acc = mlbench(*common, "--mode", "accuracy", "--output-dir", str(tmp_path / "acc"), env=env, timeout=300)
    finally:
        server.close()
    for proc in (perf, acc):
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r = json.loads(next((tmp_path / "perf").rglob("result.json")).read_text())
    assert r["status"] == "success" and r["metrics"]["throughput/tokens_per_s"] > 0
    assert r["backend"]["failed"] == {} and r["backend"]["completed"] > 0
    a = json.loads(next((tmp_path / "acc").rglob("result.json")).read_text())
    assert a["status"] == "success" and a["accuracy"]["scores"]["samples"] == 6
    assert a["accuracy"]["value"] >= 0 and a["backend"]["failed"] == {}
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".log", ".txt"):
            assert b"sk-mlbench-whisper-77e1" not in f.read_bytes(), f
