"""The ``openai`` backend's client against real servers on 127.0.0.1: ``transformers serve`` with a tiny random
Llama (started once for the module), and a scripted standard-library server for what a good server never does."""

from __future__ import annotations

import json
import time

import pytest

from llm_servers import ScriptedServer, TransformersServer, tiny_llama_dir
from mlbench.errors import ConfigError, MlbenchError
from mlbench.inference.engines.openai_api import Endpoint, OpenAIEngine, RequestFailed


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, model dir): ``transformers serve`` of a tiny random Llama, for the whole module."""
    root = tmp_path_factory.mktemp("served")
    server = TransformersServer(root / "serve.log")  # starting (slow imports) while the model is built
    try:
        model = tiny_llama_dir(root / "model")
        yield server.wait().warm(str(model)), model
    finally:
        server.close()


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> str:
    """A tokenizer folder for the scripted server's tests."""
    from mlbench.llm import tokenizer

    return str(tokenizer.train([f"w{i} mode=ok" for i in range(50)], 270, tmp_path_factory.mktemp("tok")))


@pytest.mark.slow
def test_streams_completions_from_transformers_serve(served):
    server, model = served
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


@pytest.mark.slow
def test_probe_errors_name_the_problem(served, tmp_path):
    server, model = served
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
