"""``mlbench infer llama3.1-8b --backend openai`` (issue 29) and its client, against real servers on 127.0.0.1:
``transformers serve`` with the tiny size's random Llama (started once for the module, while the tiny files are
built), and a scripted standard-library server for what a good server never does (500s, answers not streamed,
malformed JSON, stalled or cut streams)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from llm_servers import ScriptedServer, TransformersServer
from mlbench import registry
from mlbench.benchmarks.llama31_8b import inference as llm_inference
from mlbench.errors import ConfigError, MlbenchError
from mlbench.inference.engines.openai_api import Endpoint, OpenAIEngine, RequestFailed
from support import mlbench


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, tiny files): ``transformers serve`` of the tiny size's model; its folder and cnn_eval.json."""
    root = tmp_path_factory.mktemp("served")
    server = TransformersServer(root / "serve.log")  # starting (slow imports) while the tiny files are built
    old = os.environ.get("MLBENCH_CACHE")
    os.environ["MLBENCH_CACHE"] = str(root / "cache")
    try:
        tiny = llm_inference.tiny_files(registry.get("llama31_8b", "tiny").definition, print)
        yield server.wait().warm(str(tiny / "model")), tiny
    finally:
        server.close()
        if old is None:
            os.environ.pop("MLBENCH_CACHE", None)
        else:
            os.environ["MLBENCH_CACHE"] = old


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> str:
    """A tokenizer folder for the scripted server's tests."""
    from mlbench.llm import tokenizer

    return str(tokenizer.train([f"w{i} mode=ok" for i in range(50)], 270, tmp_path_factory.mktemp("tok")))


@pytest.mark.slow
def test_against_transformers_serve(served, tmp_path):
    """One test for everything that needs the real server (started once: with pytest-xdist the tests of a module
    may run on different workers, each starting its own server)."""
    streams_completions(served)
    probe_errors_name_the_problem(served, tmp_path)
    infer_backend_openai_end_to_end_keeps_the_key_out_of_every_file(served, tmp_path)


def streams_completions(served):
    server, tiny = served
    model = tiny / "model"
    with OpenAIEngine(server.url + "/v1/", str(model), max_tokens=6, concurrency=2, tokenizer_dir=str(model)) as eng:
        assert eng.server_usage and not eng.server_ids  # transformers serve: usage, no token ids
        firsts = {}
        out = []

        def first(rid, ids):
            firsts[rid] = (time.perf_counter(), ids)

        def done(rid, comp):
            out.append((rid, comp, time.perf_counter()))

        for i in range(3):
            eng.submit(i, [5, 6, 7 + i], on_first_token=first, on_done=done, on_error=pytest.fail)
        assert eng.wait(60)
        info = eng.describe()
    assert sorted(r for r, _, _ in out) == [0, 1, 2] and any(c.text for _, c, _ in out)
    for rid, comp, t_done in out:
        assert comp.finish_reason in ("length", "stop") and comp.token_count == comp.usage_tokens  # the server's
        assert 1 <= comp.token_count <= 6 and (comp.token_count == 6) == (comp.finish_reason == "length")
        assert len(comp.token_ids) >= bool(comp.text)  # the re-tokenised text
        assert 0 < comp.first_token_s <= comp.latency_s
        assert firsts[rid][0] <= t_done and len(firsts[rid][1]) == (1 if comp.text else 0)
    assert info["completed"] == 3 and info["failed"] == {}
    assert info["token_count_source"] == "server usage.completion_tokens"
    assert "re-tokenised" in info["token_ids_source"]


def probe_errors_name_the_problem(served, tmp_path):
    server, tiny = served
    model = tiny / "model"
    with pytest.raises(MlbenchError, match="refused the request") as e:
        OpenAIEngine(server.url, "no-such-model", max_tokens=2, tokenizer_dir=str(model)).start()
    assert "--api-model" in e.value.hint
    with pytest.raises(MlbenchError, match="cannot be reached") as e:
        OpenAIEngine("http://127.0.0.1:9", str(model), max_tokens=2, tokenizer_dir=str(model)).start()
    assert "--endpoint" in e.value.hint
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        OpenAIEngine(server.url, str(model), max_tokens=2, tokenizer_dir=str(tmp_path))


@pytest.mark.parametrize("url", ["ftp://x", "http://", "http://h:99999", "http://u:p@h:80", "http://h/?a=1"])
def test_bad_endpoints_are_refused(url):
    with pytest.raises(ConfigError, match="--endpoint"):
        Endpoint.parse(url)


def test_endpoint_forms():
    assert Endpoint.parse("http://h:8000/v1/").path("/v1/completions") == "/v1/completions"
    assert Endpoint.parse("https://h/api/v1").url == "https://h/api"
    assert Endpoint.parse("http://[::1]:81").url == "http://[::1]:81"


def test_failures_are_counted_by_kind_never_dropped(tok):
    """Every misbehaviour fails its request (on_error, once) and is counted; good requests beside them complete."""
    with ScriptedServer("ok", tokens=3) as srv, \
            OpenAIEngine(srv.url, "tiny", max_tokens=3, concurrency=8, timeout_s=1.0, prompt_format="text",
                         tokenizer_dir=tok) as eng:
        modes = ["ok", "500", "json", "malformed", "stall", "cut", "abort", "ok"]
        errors, done = {}, {}
        for i, m in enumerate(modes):
            eng.submit(i, prompt_text=f"mode={m}", on_done=lambda r, c: done.setdefault(r, c),
                       on_error=lambda r, k, msg: errors.setdefault(r, (k, msg)))
        assert eng.wait(30)
        info = eng.describe()
    assert sorted(done) == [0, 7] and all(c.token_count == 3 for c in done.values()), errors.get(7)
    kinds = {modes[r]: k for r, (k, _) in errors.items()}
    assert kinds == {"500": "http error", "json": "not streamed", "malformed": "malformed stream",
                     "stall": "timed out", "cut": "truncated", "abort": "truncated"}
    assert "internal failure" in errors[1][1] and "'abort'" in errors[6][1]
    assert info["completed"] == 2 and sum(info["failed"].values()) == 6


def test_concurrency_bounds_requests_in_flight(tok):
    with ScriptedServer("ok", tokens=3, delay=0.05) as srv, \
            OpenAIEngine(srv.url, "tiny", max_tokens=3, concurrency=2, tokenizer_dir=tok) as eng:
        out = eng.generate([[5]] * 6)
    assert all(not isinstance(c, RequestFailed) for c in out)
    assert srv.max_in_flight == 2


def test_api_key_is_sent_and_never_described(monkeypatch, tok):
    secret = "sk-mlbench-test-3f9a1c"
    monkeypatch.setenv("MLBENCH_TEST_KEY", secret)
    with ScriptedServer("ok") as srv, \
            OpenAIEngine(srv.url, "tiny", max_tokens=2, api_key_env="MLBENCH_TEST_KEY", tokenizer_dir=tok) as eng:
        eng.generate([[5]])
        info = eng.describe()
    assert all(h.get("Authorization") == f"Bearer {secret}" for h in srv.seen)
    assert secret not in json.dumps(info) and info["api_key_env"] == "MLBENCH_TEST_KEY"
    monkeypatch.delenv("MLBENCH_TEST_KEY")
    with pytest.raises(ConfigError, match="MLBENCH_TEST_KEY.*not set"):
        OpenAIEngine(srv.url, "tiny", max_tokens=2, api_key_env="MLBENCH_TEST_KEY", api_key_required=True,
                     tokenizer_dir=tok)


def infer_backend_openai_end_to_end_keeps_the_key_out_of_every_file(served, tmp_path):
    """`mlbench infer llama3.1-8b --backend openai` under LoadGen against transformers serve: tokens counted,
    the client's provenance in result.json, the API key (sent as a header) in no file of the run."""
    server, tiny = served
    secret = "sk-mlbench-e2e-5b2d77c1"
    proc = mlbench("infer", "llama3.1-8b", "--size", "tiny", "--backend", "openai", "--endpoint", server.url,
                   "--api-model", str(tiny / "model"), "--model-dir", str(tiny / "model"), "--data-dir", str(tiny),
                   "--scenario", "Offline", "--quick", "--duration-s", "1", "--concurrency", "2", "--batch-size", "2",
                   "--max-new-tokens", "8",
                   "--api-key-env", "MLBENCH_E2E_KEY", "--output-dir", str(tmp_path / "runs"),
                   env={"MLBENCH_E2E_KEY": secret, "MLBENCH_CACHE": str(tmp_path / "cache")}, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    [result_file] = (tmp_path / "runs").rglob("result.json")
    r = json.loads(result_file.read_text())
    assert r["status"] == "success" and r["metrics"]["throughput/tokens_per_s"] > 0
    b = r["backend"]
    assert b["engine"] == "openai" and b["failed"] == {} and b["completed"] > 0 and b["concurrency"] == 2
    assert b["api_key_env"] == "MLBENCH_E2E_KEY" and b["token_count_source"] == "server usage.completion_tokens"
    assert r["metrics"]["sut/failed_requests"] == 0
    for f in [*Path(r["run_dir"]).rglob("*"), *tmp_path.rglob("*.log")]:
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    assert secret not in out
